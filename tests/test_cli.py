import json

import pytest
from click.testing import CliRunner

from gradientflow.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_activations_json_has_the_documented_keys():
    res = invoke("activations", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    keys = {"name", "range", "mean_at_unit_gaussian", "var_at_unit_gaussian", "max_derivative",
            "saturated_fraction", "monotonic", "gain"}
    assert len(rows) == 16 and all(keys <= set(r) for r in rows)
    assert next(r for r in rows if r["name"] == "relu")["range"] == [0.0, None]


def test_activations_table_prints_every_row():
    res = invoke("activations")
    assert res.exit_code == 0 and res.output.count("\n") == 18


def test_propagate_json_shape():
    res = invoke("propagate", "--activation", "relu", "--init", "he", "--depth", "3", "--width", "64",
                 "--batch", "100", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["config"]["activation"] == "relu" and [layer["index"] for layer in out["layers"]] == [1, 2, 3]
    assert set(out["layers"][0]) == {"index", "mean", "std", "saturated", "zero", "predicted_mean", "predicted_std"}
    assert out["layers"][2]["predicted_std"] == pytest.approx(out["layers"][2]["std"], rel=0.1)


def test_propagate_is_reproducible_by_seed():
    args = ("propagate", "--depth", "2", "--width", "32", "--batch", "50", "--json", "--seed", "3")
    assert invoke(*args).output == invoke(*args).output


def test_plot_writes_png_and_svg(tmp_path):
    res = invoke("propagate", "--depth", "3", "--width", "32", "--batch", "64", "--plot", str(tmp_path / "figs"))
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["propagate_tanh_xavier_hist.png", "propagate_tanh_xavier_hist.svg",
                     "propagate_tanh_xavier_moments.png", "propagate_tanh_xavier_moments.svg"]


def test_plot_activations_writes_the_gallery(tmp_path):
    res = invoke("plot", "activations", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "activations.png").stat().st_size > 10_000
    assert len(list(tmp_path.glob("activation_*.svg"))) == 16


@pytest.mark.parametrize("args,needle", [
    (("--activation", "rleu"), "invalid activation='rleu': unknown activation; expected one of: sigmoid"),
    (("--init", "xavir"), "invalid init='xavir': unknown initialiser; expected one of: zeros"),
    (("--depth", "0"), "invalid depth=0"),
    (("--width", "-5"), "invalid width=-5"),
    (("--batch", "100000000"), "invalid batch=100000000"),
    (("--std", "nan", "--init", "normal"), "invalid std=nan: must be a finite number >= 0"),
    (("--std", "-1", "--init", "normal"), "invalid std=-1.0"),
    (("--gain", "inf"), "invalid gain=inf"),
    (("--width", "100000", "--batch", "100000"), "too large"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    res = invoke("propagate", *args)
    assert res.exit_code == 2
    assert needle in res.output and res.output.count("\n") == 1 and "Traceback" not in res.output


def test_missing_parent_folder_is_refused_and_nothing_is_written(tmp_path):
    res = invoke("plot", "activations", "--out", str(tmp_path / "no" / "such"))
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "no").exists()


def test_an_existing_file_is_not_overwritten_by_out(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("precious")
    res = invoke("plot", "activations", "--out", str(target))
    assert res.exit_code == 2 and target.read_text() == "precious"


@pytest.mark.parametrize("args", [("propagate", "--depth", "abc"), ("propagate", "--bogus"), ("nope",)])
def test_click_parse_errors_are_one_line_too(args):
    res = invoke(*args)
    assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1


def test_propagate_and_train_take_the_meanfield_coordinates(tmp_path):
    import json

    r = invoke("propagate", "--activation", "tanh", "--init", "meanfield", "--sigma-w2", "1.76", "--sigma-b2", "0.05",
               "--depth", "6", "--width", "300", "--batch", "400", "--json")
    assert r.exit_code == 0, r.output
    layers = json.loads(r.output)["layers"]
    assert all(abs(x["std"] - x["predicted_std"]) < 0.05 * x["predicted_std"] for x in layers)  # theory beside it
    r = invoke("train", "--data", "xor", "--init", "he", "--sigma-w2", "2", "--out", str(tmp_path / "r"))
    assert r.exit_code == 2 and "read only by init='meanfield'" in r.output and not (tmp_path / "r").exists()
