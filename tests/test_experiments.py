"""The claims catalog, its verdicts (which must be able to fail), and ``reproduce`` end to end."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gradientflow import experiments
from gradientflow.cli import main
from gradientflow.experiments import optimisers

import reference

SHARED = Path(__file__).resolve().parents[2] / "shared" / "CLAIMS.md"


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_every_claim_is_covered_once_by_a_complete_module():
    ids = experiments.claim_ids()
    assert list(ids) == [f"C{k}" for k in range(1, 22)] + ["X1", "X2", "X3"]  # the seeds' claims, then the ones beyond
    for name in experiments.MODULES:
        mod = experiments.load(name)
        assert mod.CLAIMS and all(c.text and c.source for c in mod.CLAIMS)
        # typed sizes: both instances of the module's own Size, a frozen, validated record
        assert issubclass(mod.Size, experiments.Size) and mod.Size is not experiments.Size
        assert isinstance(mod.QUICK, mod.Size) and isinstance(mod.FULL, mod.Size) and mod.QUICK != mod.FULL
        assert callable(mod.run) and callable(mod.verdicts) and callable(mod.figures)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/CLAIMS.md is not beside the checkout")
def test_the_catalog_matches_the_claims_document():
    listed = set(re.findall(r"\*\*(C\d+)\b", SHARED.read_text()))
    assert listed == {c for c in experiments.claim_ids() if c.startswith("C")}


def test_select_maps_claims_to_modules_and_names_unknown_ids():
    assert experiments.select("c15, C7") == ["dead_units", "init_depth"]
    assert experiments.select(None) == list(experiments.MODULES)
    with pytest.raises(ValueError, match="C99"):
        experiments.select("C7,C99")


def test_a_foreign_folder_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not write"):
        experiments.prepare_folder(tmp_path, {})
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# --- verdicts are computed, so doctored numbers must flip them ---

def _vanishing_numbers(per_layer: float) -> dict:
    g = [per_layer ** (9 - k) for k in range(10)]
    net = {"act_grad_norm": g, "weight_grad_norm": g, "theory_factor": g}
    return {"depth": 10, "sigmoid": net, "tanh": net, "relu": net}


def test_c2_fails_when_the_gradient_does_not_shrink():
    from gradientflow.experiments import vanishing

    assert vanishing.verdicts(_vanishing_numbers(0.2))["C2"].passed
    assert not vanishing.verdicts(_vanishing_numbers(0.9))["C2"].passed


def test_c14_fails_when_units_stay_distinct():
    from gradientflow.experiments import zero_init

    base = {"width": 4, "xavier": {"distinct_units": [4, 4], "test_accuracy": 0.5},
            "zeros": {"distinct_units": [1, 1], "weight_norm": [0.1, 0.2], "test_accuracy": 0.1}}
    assert zero_init.verdicts(base)["C14"].passed
    base["zeros"]["distinct_units"] = [1, 3]
    assert not zero_init.verdicts(base)["C14"].passed
    base["zeros"]["distinct_units"], base["zeros"]["weight_norm"] = [1, 1], [0.0, 0.0]  # symmetric but never moved
    assert not zero_init.verdicts(base)["C14"].passed


# --- the one optimiser written out here, against the plain reference ---

@pytest.mark.parametrize("corrected", [False, True])
def test_adam_steps_match_the_seed_formula(corrected):
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=3) for _ in range(20)]
    mine = optimisers.adam_steps([torch.tensor(g) for g in grads], 1e-3, correct_v=corrected, correct_r=corrected)
    theta, state = np.zeros(3), {}
    for g, step in zip(grads, mine):
        new = reference.adam(theta, g, state, alpha=1e-3, mu=0.9, rho=0.999, delta=1e-8, bias_correction=corrected)
        np.testing.assert_allclose(step.numpy(), new - theta, rtol=1e-10, atol=1e-15)
        theta = new


# --- end to end ---

def test_reproduce_quick_writes_a_report_that_agrees_with_claims_json(tmp_path):
    out = tmp_path / "report"
    res = invoke("reproduce", "--quick", "--only", "C2,C14", "--jobs", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == ["C2", "C14"]
    html = (out / "report.html").read_text()
    for c in claims:
        assert c["verdict"] in ("pass", "fail")
        assert (out / c["figure"]).exists()
        assert f'id="{c["id"]}"' in html and f'badge {c["verdict"]}' in html
        assert c["command"].startswith(f"gradientflow reproduce --only {c['id']}")
    assert html.count("data:image/png;base64,") == 2  # figures embedded: one self-contained file
    # the same seed again, in worker processes this time: the same verdicts and numbers
    again = tmp_path / "again"
    res = invoke("reproduce", "--quick", "--only", "C2,C14", "--jobs", "2", "--out", str(again))
    assert res.exit_code == 0, res.output
    assert json.loads((again / "claims.json").read_text()) == claims
    # rewriting an earlier report folder is allowed
    assert invoke("reproduce", "--quick", "--only", "C2", "--jobs", "1", "--out", str(out)).exit_code == 0
    assert [c["id"] for c in json.loads((out / "claims.json").read_text())] == ["C2"]


@pytest.mark.parametrize("args, message", [
    (["--only", "C99"], "C99"),
    (["--only", ","], "--only"),
    (["--seed", "-1"], "--seed"),
    (["--jobs", "0"], "--jobs"),
])
def test_reproduce_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    res = invoke("reproduce", "--quick", *args, "--out", str(tmp_path / "r"))
    assert res.exit_code == 2
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_reproduce_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    res = invoke("reproduce", "--quick", "--only", "C2", "--out", str(tmp_path))
    assert res.exit_code == 2 and "did not write" in res.output
    assert (tmp_path / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_the_closed_form_uncorrected_adam_factor_matches_the_reference_loop():
    """(1 - mu^t) / sqrt(1 - rho^t) against tests/reference.adam with and without correction, steady gradient."""
    from gradientflow.experiments.optimisers import uncorrected_factor

    g, steps = np.array([0.7]), 30
    with_c, without, state_c, state_u = np.zeros(1), np.zeros(1), {}, {}
    ratios = []
    for _ in range(steps):
        before_c, before_u = with_c.copy(), without.copy()
        with_c = reference.adam(with_c, g, state_c, alpha=1e-3, mu=0.9, rho=0.999, delta=0.0)
        without = reference.adam(without, g, state_u, alpha=1e-3, mu=0.9, rho=0.999, delta=0.0, bias_correction=False)
        ratios.append(float((without - before_u)[0] / (with_c - before_c)[0]))
    assert ratios == pytest.approx(uncorrected_factor(np.arange(1, steps + 1), 0.9, 0.999), rel=1e-9)


def test_c20_counts_divergence_blow_ups_and_early_spikes_but_not_where_the_run_ends():
    """Unstable: a non-finite loss, a gradient norm 10x its start, or an early loss 1.5x its start. A run that
    learns nothing yet stays calm is stable (instability is not judged by the final loss), and one noisy
    late mini-batch is not a spike."""
    from gradientflow.experiments import lr_schedules as s

    steps, per_epoch = 320, 32
    calm = [2.3 * 0.995 ** t for t in range(steps)]
    norms = [1.0 + 0.01 * t for t in range(steps)]
    def stable(loss=calm, g=norms, status="finished"):
        return s.outcome(status, loss, g, per_epoch, loss[-1])["stable"]

    assert stable() and stable(loss=[2.3] * steps)  # learned nothing, calmly: not unstable
    assert stable(loss=[v * (4.0 if t == 300 else 1.0) for t, v in enumerate(calm)])  # one late noisy batch
    assert not stable(status="diverged")
    assert not stable(g=[1.0] * 50 + [12.0] + [1.0] * (steps - 51))  # the gradient norm blew up once
    assert not stable(loss=calm[:20] + [3.6] * 40 + calm[60:])  # early, the loss rose 1.5x above its start


def _c21(loss, accuracy, seeds: int = 3, budgets=(2, 6)) -> dict:
    """C21 measurements of one depth whose every net, at every rate and epoch, has the training loss and
    validation accuracy ``loss(act, column, seed)`` and ``accuracy(act, column, seed)`` (None: diverged)."""
    from gradientflow.experiments import recommendation as r

    rates = [0.01, 0.02]
    cells = {}
    for act in r.ACTIVATIONS:
        for c in (*r.COLUMNS, r.AGAIN):
            per_rate = lambda f: [[[f(act, c, s)] * max(budgets) for s in range(seeds)] for _ in rates]  # noqa: E731
            cells[f"6|{act}|{c}"] = {"train_loss": per_rate(loss), "validation_accuracy": per_rate(accuracy)}
    return {"cells": cells, "depths": [6], "budgets": list(budgets), "rates": rates, "seeds": seeds, "classes": 10,
            "steps_per_epoch": 50}


def test_c21_a_row_is_lost_only_when_the_best_column_wins_by_more_than_the_null_spread():
    """The null spread is how far two draws of the recommended column lie apart (their medians, and their
    seeds pooled and split every way): a win inside it is a tie, a win beyond it a loss."""
    from gradientflow.experiments import recommendation as r

    def outcome(rec, gain, again, metric="train_loss", act="tanh", others=2.0):
        pick = lambda a, c, s: (rec if c == "xavier" else gain if c == "gain" else again if c == r.AGAIN  # noqa: E731
                                else [others] * 3)[s] if a == act else 1.0
        accuracy = lambda a, c, s: 1 - pick(a, c, s) / 3 if pick(a, c, s) is not None else None  # noqa: E731
        rows = r.table(_c21(pick, accuracy))
        return {b: rows[f"6|{b}|{metric}"][act] for b in (2, 6)}[6]

    assert outcome([1.0, 1.01, 1.02], [0.8, 0.8, 0.8], [1.0, 1.01, 1.02])["outcome"] == "loses"
    assert outcome([1.0, 1.01, 1.02], [0.8, 0.8, 0.8], [1.0, 1.01, 1.02], "validation_accuracy")["outcome"] == "loses"
    noisy = outcome([1.0, 1.01, 1.02], [0.8, 0.8, 0.8], [0.85, 0.9, 1.3])  # gain wins by 26% and 12.5% (the redraw)
    assert noisy["threshold"] > noisy["gap"] > 0.1 and noisy["outcome"] == "holds"  # the draws' halves: 13% apart
    redraw = outcome([1.0, 1.01, 1.02], [0.8, 0.8, 0.8], [0.7, 0.72, 0.75])  # the redraw beats gain: no loss
    assert redraw["gap"] < 0 and redraw["outcome"] == "holds"
    split = outcome([0.9, 1.0, 1.4], [0.85, 0.85, 0.85], [0.9, 1.0, 1.1])  # equal medians, halves 0.9 and 1.1
    assert split["threshold"] > split["gap"] > 0.15 and split["outcome"] == "holds"
    assert outcome([None] * 3, [1.5] * 3, [None] * 3)["outcome"] == "loses"  # the recommendation always diverged
    erratic = outcome([None, None, 1.0], [1.5] * 3, [1.0] * 3)  # its draws diverge or not: chance spans all
    assert erratic["threshold"] == math.inf and erratic["outcome"] == "holds"
    best = outcome([1.0, 1.0, 1.0], [1.2, 1.2, 1.2], [1.0, 1.0, 1.0])
    assert best["best"] == "xavier" and best["outcome"] == "holds"
    chance = outcome([2.3] * 3, [2.1] * 3, [2.3] * 3, others=2.3)  # 2.1 > 0.9 ln 10: nothing learned, nothing decided
    assert not chance["learned"] and chance["outcome"] == "undecided"


def test_c21_the_tie_threshold_is_the_largest_null_spread_of_the_rows_of_a_depth_and_budget():
    """Three seeds of one row can understate the noise: a row whose two draws of He lie 30% apart makes
    tanh's 20% win a tie at the same depth and budget."""
    from gradientflow.experiments import recommendation as r

    def loss(act, column, seed):
        if act == "tanh":
            return {"xavier": 1.0, "gain": 0.8}.get(column, 2.0) if column != r.AGAIN else 1.0
        if act == "relu":
            return 1.3 if column == r.AGAIN else 1.0
        return 1.0

    rows = r.table(_c21(loss, lambda a, c, s: 0.5))["6|6|train_loss"]
    assert rows["tanh"]["null"] == 0 and rows["relu"]["null"] >= 0.3
    assert rows["tanh"]["threshold"] == rows["relu"]["null"] and rows["tanh"]["outcome"] == "holds"
    calm = r.table(_c21(lambda a, c, s: loss(a, c, s) if a != "relu" else 1.0, lambda a, c, s: 0.5))
    assert calm["6|6|train_loss"]["tanh"]["outcome"] == "loses"


def test_c21_tunes_each_cell_per_budget_and_metric_on_the_median_over_seeds():
    from gradientflow.experiments import recommendation as r

    cell = {"train_loss": [[[2.0, 1.0], [2.0, 1.2], [2.0, None]],  # rate 0: best at epoch 2 (median 1.2)
                           [[1.5, None], [1.6, None], [1.4, 1.1]]],  # rate 1: best at epoch 1, diverges later
            "validation_accuracy": [[[0.1, 0.5]] * 3, [[0.3, 0.2]] * 3]}
    assert r.tuned(cell, 1, "train_loss")["rate"] == 1 and r.tuned(cell, 1, "train_loss")["score"] == 1.5
    assert r.tuned(cell, 2, "train_loss")["rate"] == 0 and r.tuned(cell, 2, "train_loss")["score"] == 1.2
    assert r.tuned(cell, 1, "validation_accuracy")["rate"] == 1 and r.tuned(cell, 2, "validation_accuracy")["rate"] == 0


def test_x1_runs_its_grid_through_the_batched_trainer_and_draws_the_boundary(tmp_path):
    """A tiny X1: every (sigma_w^2, depth, seed) trained, theory's xi_c beside it, a verdict and a figure."""
    from gradientflow import theory
    from gradientflow.experiments import trainability

    size = trainability.Size(sigma_w2=(1.0, 4.0), depths=(2, 6), seeds=2, width=8, n_train=120, batch_size=32,
                             epochs=1, lr=0.01)
    m = trainability.run(size, 3, tmp_path)
    assert m["seeds"] == [3, 4] and m["chance_loss"] == pytest.approx(math.log(10))
    assert all(math.isfinite(v) for row in m["train_loss"] for cell in row for v in cell)
    assert np.shape(m["train_loss"]) == (2, 2, 2)
    assert m["xi_c"] == pytest.approx([theory.analyse("tanh", w, 0.05).xi_c for w in (1.0, 4.0)])
    verdict = trainability.verdicts(m)["X1"]
    assert isinstance(verdict.passed, bool) and verdict.why
    assert set(trainability.figures(m)) == {"trainability"}
