"""The theory commands and `activations --cost` from the command line: shapes, numbers, bad input."""

import json
import math

import pytest
from click.testing import CliRunner

from gradientflow import theory
from gradientflow.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_theory_point_json_matches_the_library_and_is_strict_json():
    res = invoke("theory", "--activation", "tanh", "--sigma-w2", "2.5", "--sigma-b2", "0.1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    point = theory.analyse("tanh", 2.5, 0.1)
    assert out["phase"] == point.phase == "chaotic" and out["q_star"] == pytest.approx(point.q_star, rel=1e-12)
    assert out["c_star"] == pytest.approx(point.c_star) and 0 < out["c_star"] < 1
    critical = json.loads(invoke("theory", "--activation", "relu", "--sigma-w2", "2", "--json").output)
    assert critical["phase"] == "critical" and critical["xi_c"] == "inf"  # infinity as a string, not Infinity


def test_theory_point_text_names_every_field():
    res = invoke("theory", "--activation", "relu", "--sigma-w2", "1.5")
    assert res.exit_code == 0 and "ordered" in res.output
    assert [line.split()[0] for line in res.output.splitlines()] == list(theory.Point.__dataclass_fields__)


def test_theory_critical_gives_the_edge_of_chaos():
    out = json.loads(invoke("theory", "critical", "--activation", "tanh", "--json").output)
    assert out["sigma_w2"] == pytest.approx(1.0, rel=1e-6)
    res = invoke("theory", "critical", "--activation", "tanh", "--sigma-b2", "0.05")
    w = theory.critical_sigma_w2("tanh", 0.05)
    assert res.exit_code == 0 and f"{w:.6g}" in res.output and w > 1


def test_theory_phase_writes_the_figure(tmp_path):
    res = invoke("theory", "phase", "--activation", "relu", "--resolution", "20", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "phase_relu.png").stat().st_size > 10_000 and (tmp_path / "phase_relu.svg").exists()


@pytest.mark.parametrize("args, needle", [
    (("theory", "--activation", "maxout"), "maxout is not elementwise"),
    (("theory", "--activation", "rleu"), "invalid activation='rleu'"),
    (("theory", "--sigma-w2", "nan"), "invalid sigma_w2=nan: must be a finite number > 0"),
    (("theory", "--sigma-w2", "0"), "invalid sigma_w2=0.0"),
    (("theory", "--sigma-b2", "-1"), "invalid sigma_b2=-1.0"),
    (("theory", "--sigma-w2", "1e9"), "invalid sigma_w2=1000000000.0"),
    (("theory", "critical", "--activation", "relu", "--sigma-b2", "0.1"), "no critical point at sigma_b2=0.1"),
    (("theory", "critical", "--sigma-b2", "inf"), "invalid sigma_b2=inf"),
    (("theory", "phase", "--out", "/tmp", "--resolution", "2"), "invalid resolution=2"),
    (("theory", "phase", "--out", "/tmp", "--sigma-w2-max", "0"), "invalid sigma_w2_max=0.0"),
])
def test_bad_theory_input_is_one_line_and_exit_2(args, needle):
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert needle in res.output and res.output.count("\n") == 1 and "Traceback" not in res.output


def test_a_bad_phase_request_writes_nothing(tmp_path):
    res = invoke("theory", "phase", "--out", tmp_path / "figs", "--resolution", "1000")
    assert res.exit_code == 2 and not (tmp_path / "figs").exists()


def test_activations_cost_adds_timings_to_every_row():
    res = invoke("activations", "--cost", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 16 and all(r["forward_ns"] > 0 and r["forward_backward_ns"] > 0 for r in rows)
    relu = next(r for r in rows if r["name"] == "relu")
    assert relu["forward_vs_relu"] == 1.0 and math.isfinite(relu["forward_backward_vs_relu"])


def test_activations_cost_text_has_the_timing_columns(monkeypatch):
    from gradientflow import properties

    fake = lambda names, **_: [{"name": n, "forward_ns": 1.0, "forward_backward_ns": 2.0, "forward_vs_relu": 1.0,  # noqa: E731
                                "forward_backward_vs_relu": 1.0} for n in names]
    monkeypatch.setattr(properties, "cost_table", fake)
    text = invoke("activations", "--cost").output
    assert text.splitlines()[0].split()[-2:] == ["ns/el", "xReLU"] and text.count("\n") == 18
