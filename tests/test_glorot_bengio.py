"""X2 (saturation during training) and X3 (Table 1 analogue), after Glorot & Bengio 2010: the verdicts on the
stored quick measurements, doctored numbers that flip each rule, the rules' statistics on numbers built
here, and a tiny run of each experiment.

The stored measurements (`tests/data/quick/<experiment>.json.gz`) are the `measured` part of
`data/<experiment>.json` that `gradientflow reproduce --quick --only X2,X3 --seed 0` writes, gzipped;
regenerate them when an experiment's measurements change shape.
"""

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gradientflow.experiments import saturation, table_one

DATA = Path(__file__).parent / "data" / "quick"


def _measured(experiment: str) -> dict:
    return json.loads(gzip.decompress((DATA / f"{experiment}.json.gz").read_bytes()))


# --- X2: saturation during training ---

def _x2() -> dict:
    return _measured("saturation")


def _passes_x2(m: dict) -> bool:
    return saturation.verdicts(m)["X2"].passed


def _set_top_mean(m: dict, series) -> dict:
    """Every sigmoid seed's top-layer mean replaced by ``series(read)``."""
    for seed in m["nets"]["sigmoid"]["mean"]:
        for j, row in enumerate(seed):
            row[-1] = series(j)
    return m


def _p98(m: dict, label: str, layer: int, value: float) -> dict:
    """Net ``label``'s 98th percentile of |a| in ``layer`` set to ``value`` at every read of every seed."""
    for seed in m["nets"][label]["p98"]:
        for row in seed:
            row[layer] = value
    return m


def test_x2_passes_on_the_stored_quick_run():
    verdict = saturation.verdicts(_x2())["X2"]
    assert verdict.passed, verdict.why
    assert "Glorot & Bengio 2010, Fig. 2" in verdict.threshold and "Fig. 3" in verdict.threshold
    assert verdict.figure == "saturation" and set(saturation.figures(_x2())) == {"saturation"}


def test_x2_fails_when_the_sigmoid_top_layer_never_falls():
    assert not _passes_x2(_set_top_mean(_x2(), lambda j: 0.5))


def test_x2_fails_when_the_sigmoid_top_layer_never_recovers():
    assert not _passes_x2(_set_top_mean(_x2(), lambda j: 0.5 if j == 0 else 0.005))


def test_x2_fails_when_the_top_layer_falls_only_late():
    """A fall after the first tenth of training is not the paper's "very quickly at the beginning"."""
    m = _x2()
    late = saturation.early_reads(m["epochs"])
    assert not _passes_x2(_set_top_mean(m, lambda j: 0.5 if j <= late else (0.005 if j < late + 3 else 0.1)))


def test_x2_fails_when_the_lower_sigmoid_layers_fall_with_the_top():
    m = _x2()
    for seed in m["nets"]["sigmoid"]["mean"]:
        for row in seed:
            row[:-1] = [0.05] * (len(row) - 1)
    assert not _passes_x2(m)


def test_x2_fails_when_its_control_the_tanh_top_layer_saturates_too():
    """A tanh top layer whose mean slope 1 - E[a^2] is gone: the early collapse is no longer the sigmoid's own."""
    m = _x2()
    for seed in m["nets"]["tanh"]["std"]:
        for row in seed:
            row[-1] = 1.0
    assert not _passes_x2(m)


def test_x2_fails_when_the_first_tanh_layer_is_not_first():
    m = _p98(_x2(), "tanh", 0, 0.5)  # layer 1 never saturates
    assert not _passes_x2(m)


def test_x2_fails_when_tanh_saturates_from_the_top_down():
    """Every seed's saturation times reversed across the layers: layer 1 last, the top layer first."""
    m = _x2()
    for seed in m["nets"]["tanh"]["p98"]:
        for row in seed:
            row.reverse()
    assert not _passes_x2(m)


def test_x2_fails_when_its_control_softsign_saturates():
    assert not _passes_x2(_p98(_x2(), "softsign", 0, 0.999))


def test_x2_does_not_rule_on_the_normalised_net():
    """Reported beside the rule, not part of it: its numbers may say anything."""
    m = _p98(_x2(), "tanh_normalised", 0, 0.0)
    assert _passes_x2(m)
    assert "not in layer order" in saturation.verdicts(m)["X2"].why


def test_kendall_tau_reads_never_as_tied_last():
    tau = saturation.kendall_tau
    assert tau(np.array([1.0, 2.0, 3.0, 4.0])) == 1.0
    assert tau(np.array([4.0, 3.0, 2.0, 1.0])) == -1.0
    assert tau(np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(4 / 6)
    # two layers never saturate: tied last; tau-b = 5 / sqrt(6 * 5)
    assert tau(np.array([1.0, 2.0, math.inf, math.inf])) == pytest.approx(5 / math.sqrt(30))
    assert tau(np.array([math.inf] * 4)) == 0.0


def test_mean_slope_reads_the_moments():
    # a sigmoid layer all at 0.5 (mean 0.5, std 0): s' = 1/4, the largest; at 0 or 1: nothing
    assert saturation.mean_slope("sigmoid", np.array(0.5), np.array(0.0)) == pytest.approx(1.0)
    assert saturation.mean_slope("sigmoid", np.array(0.01), np.array(0.0)) == pytest.approx(4 * 0.01 * 0.99)
    # half the units at 0, half at 1: mean 0.5, std 0.5 -> E[s'] = 0
    assert saturation.mean_slope("sigmoid", np.array(0.5), np.array(0.5)) == pytest.approx(0.0)
    # tanh: 1 - E[a^2]; |a| = 1 everywhere saturates, a = 0 does not
    assert saturation.mean_slope("tanh", np.array(0.0), np.array(1.0)) == pytest.approx(0.0)
    assert saturation.mean_slope("tanh", np.array(0.0), np.array(0.0)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="softsign"):
        saturation.mean_slope("softsign", np.array(0.0), np.array(0.0))


def _course_numbers(top: list[float], lower: float = 0.6, epochs: list[float] | None = None) -> dict:
    """A one-seed sigmoid net of 3 layers whose top-layer mean runs along ``top`` (one read per epoch unless
    ``epochs`` says otherwise)."""
    mean = [[[lower, lower, t] for t in top]]
    return {"epochs": epochs or list(range(len(top))), "seeds": [0],
            "nets": {"sigmoid": {"activation": "sigmoid", "mean": mean, "std": [[[0.1] * 3] * len(top)],
                                 "p98": [[[0.5] * 3] * len(top)], "test_error": [[0.9] * len(top)]}}}


def test_sigmoid_course_finds_the_fall_the_plateau_and_the_rise():
    top = [0.5, 0.01] + [0.005] * 10 + [0.05] * 8  # 20 epochs: falls at 1, rises at 12
    [c] = saturation.sigmoid_course(_course_numbers(top))
    assert (c["fell"], c["epoch_fell"], c["lower_kept"]) == (True, 1, True)
    assert (c["minimum"], c["epoch_minimum"], c["end"]) == (0.005, 2, 0.05)
    assert (c["recovered"], c["epoch_rose"], c["slow"], c["shows"]) == (True, 12, True, True)
    # fallen by epoch 1 and risen again half an epoch later: a plateau shorter than the fall is not "slowly"
    [fast] = saturation.sigmoid_course(_course_numbers([0.5, 0.01] + [0.05] * 18, epochs=[0, 1] + [1.5 + k for k in range(18)]))
    assert fast["recovered"] and fast["epoch_rose"] == 1.5 and not fast["slow"] and not fast["shows"]
    [low] = saturation.sigmoid_course(_course_numbers(top, lower=0.2))
    assert low["fell"] and not low["lower_kept"] and not low["shows"]


def test_saturation_times_take_the_first_read_at_the_threshold():
    p98 = [[[0.5, 0.2], [0.99, 0.5], [0.995, 0.98], [1.0, None]]]  # a NaN (stored null) never reaches
    m = {"epochs": [0, 1, 2, 3], "nets": {"tanh": {"mean": p98, "std": p98, "p98": p98, "test_error": [[0] * 4]}}}
    assert saturation.saturation_times(m, "tanh").tolist() == [[1.0, math.inf]]
    order = saturation.saturation_order(m, "tanh")
    assert order["first"] == [True] and order["saturated"] == [1] and order["tau"] == [1.0]


# --- X3: the Table 1 analogue ---

def _x3() -> dict:
    return _measured("table_one")


def _set_errors(m: dict, errors: dict[str, float]) -> dict:
    """Every data set's cells at the given error on every seed (cells not named keep theirs)."""
    for table in m["error"].values():
        for cell, value in errors.items():
            table[cell] = [value] * len(table[cell])
    return m


PAPER_LIKE = {"sigmoid standard": 0.9, "tanh standard": 0.3, "tanh normalised": 0.2, "softsign standard": 0.25,
              "softsign normalised": 0.24}  # the directions of the paper's Shapeset column


def _passes_x3(m: dict) -> bool:
    return table_one.verdicts(m)["X3"].passed


def test_x3_stored_quick_run_gives_its_verdict_with_the_papers_numbers():
    verdict = table_one.verdicts(_x3())["X3"]
    assert isinstance(verdict.passed, bool) and verdict.why
    assert "27.15" in verdict.threshold and "82.61" in verdict.threshold  # the paper's Table 1, quoted
    assert "Shapeset-3x2 tanh 11.55" in verdict.why
    assert set(table_one.figures(_x3())) == {"table_one"}


def test_x3_passes_on_numbers_in_the_papers_directions():
    assert _passes_x3(_set_errors(_x3(), PAPER_LIKE))


@pytest.mark.parametrize("spoil", [
    {"tanh normalised": 0.35},  # the normalised init makes tanh worse
    {"sigmoid standard": 0.28},  # the sigmoid beats tanh
    {"softsign normalised": 0.1},  # softsign gains more than tanh: the control
])
def test_x3_fails_when_a_rule_is_broken(spoil):
    assert not _passes_x3(_set_errors(_set_errors(_x3(), PAPER_LIKE), spoil))


def test_x3_needs_a_majority_of_paired_seeds_not_only_the_median():
    """tanh N lower in median but on two seeds of five only: rule 1 fails."""
    m = _set_errors(_x3(), PAPER_LIKE)
    for table in m["error"].values():
        table["tanh standard"] = [0.3, 0.3, 0.3, 0.1, 0.1]
        table["tanh normalised"] = [0.2, 0.2, 0.4, 0.4, 0.4][:len(table["tanh standard"])]
        table["tanh standard"] = table["tanh standard"][:len(table["tanh normalised"])]
    row = table_one.compared(m, "digits")
    assert row["tanh_paired"].startswith("2 of") and not row["normalised_helps_tanh"]
    assert not _passes_x3(m)


def test_x3_counts_a_diverged_net_as_the_worst_error():
    m = _set_errors(_x3(), PAPER_LIKE)
    m["error"]["mnist1d"]["tanh normalised"] = [None] * len(m["error"]["mnist1d"]["tanh normalised"])
    assert table_one.medians(m, "mnist1d")["tanh normalised"] == 1.0
    assert not _passes_x3(m)


def test_x3_compares_each_data_set_on_its_own_numbers():
    m = _set_errors(_x3(), PAPER_LIKE)
    row = table_one.compared(m, "mnist1d")
    assert row["tanh_gain"] == pytest.approx(0.1) and row["softsign_gain"] == pytest.approx(0.01)
    assert row["normalised_helps_tanh"] and row["sigmoid_worst"] and row["softsign_gains_less"]


def test_x3_quotes_table_one_and_its_gaps():
    assert table_one.PAPER["tanh"] == (27.15, 1.76, 55.9, 70.58)
    assert table_one.PAPER["tanh N"] == (15.60, 1.64, 52.92, 68.57)
    assert all(table_one.PAPER["sigmoid"][j] == max(v[j] for v in table_one.PAPER.values()) for j in range(4))


def test_x3_cells_and_configs_follow_the_table():
    assert table_one.cells("sigmoid") == ("standard",)  # the paper has no Sigmoid N
    cfgs = table_one.configs(table_one.QUICK, 3, "digits", "tanh")
    assert [c.init for c in cfgs] == ["lecun"] * 5 + ["xavier_uniform"] * 5 and [c.seed for c in cfgs[:5]] == [3, 4, 5, 6, 7]
    assert cfgs[0].gain == pytest.approx(1 / math.sqrt(3)) and cfgs[0].depth == 5


# --- tiny runs ---

@pytest.fixture
def one_thread():
    """One torch thread, as reproduce runs every experiment: tiny batched products on a busy machine
    are many times slower with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("label", ["standard", "normalised"])
def test_paper_network_draws_the_papers_uniform_inits(label):
    """Standard: U[-1/sqrt(n_in), 1/sqrt(n_in)] (Glorot & Bengio 2010, eq. 1); normalised: U[-b, b] with
    b = sqrt(6 / (n_in + n_out)) (eq. 16); biases 0."""
    from gradientflow import job

    cfg = next(c for c in saturation.configs(saturation.QUICK, 0) if c.init == saturation.INITS[label]["init"])
    cfg = cfg.replace(width=400, n_train=100, n_test=10)
    net = saturation.paper_network(cfg, job.dataset(cfg))
    for layer in (net[0], net[2]):  # 40 -> 400, then 400 -> 400
        n_out, n_in = layer.weight.shape
        bound = 1 / math.sqrt(n_in) if label == "standard" else math.sqrt(6 / (n_in + n_out))
        w = layer.weight.detach()
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.98 * bound
        assert float(w.var()) == pytest.approx(bound ** 2 / 3, rel=0.05)
        assert not layer.bias.detach().any()


def test_x2_tiny_run_reads_every_layer_at_every_epoch(tmp_path, one_thread):
    size = saturation.Size(depth=3, width=8, seeds=2, n_train=100, n_test=50, batch_size=10, epochs=2, probe=20)
    m = saturation.run(size, 1, tmp_path)
    assert m["seeds"] == [1, 2] and m["epochs"] == [0, 1, 2]
    for label, r in m["nets"].items():
        assert np.shape(r["mean"]) == np.shape(r["p98"]) == (2, 3, 3) and np.shape(r["test_error"]) == (2, 3)
        assert r["activation"] == saturation.NETS[label][0]
    sig = np.asarray(m["nets"]["sigmoid"]["mean"])
    assert ((sig > 0) & (sig < 1)).all()
    verdict = saturation.verdicts(m)["X2"]
    assert isinstance(verdict.passed, bool) and verdict.why
    assert set(saturation.figures(m)) == {"saturation"}


def test_x2_reads_the_trained_nets_test_error(one_thread):
    """The read after the last epoch sees the weights the batched trainer ended with: its test error is
    the trainer's own."""
    from gradientflow.sweep import batched

    size = saturation.Size(depth=2, width=8, seeds=2, n_train=100, n_test=50, batch_size=10, epochs=2, probe=20)
    cfgs = [c for c in saturation.configs(size, 0) if c.activation == "tanh"]
    watched = saturation.train_watched(cfgs, size)
    summaries = batched.train(cfgs, network=saturation.paper_network)
    for k, summary in enumerate(summaries):
        assert watched["test_error"][k][-1] == pytest.approx(1 - summary.test_accuracy, abs=1e-9)


def test_x3_tiny_run_fills_every_cell(tmp_path, one_thread):
    size = table_one.Size(depth=2, width=8, seeds=2, batch_size=20, mnist1d=(100, 50, 1), digits=(1700, 1))
    m = table_one.run(size, 0, tmp_path)
    assert set(m["error"]) == {"mnist1d", "digits"}
    for table in m["error"].values():
        assert list(table) == ["sigmoid standard", "tanh standard", "tanh normalised", "softsign standard",
                               "softsign normalised"]
        assert all(len(v) == 2 and all(0 <= e <= 1 for e in v) for v in table.values())
    verdict = table_one.verdicts(m)["X3"]
    assert isinstance(verdict.passed, bool) and verdict.why

