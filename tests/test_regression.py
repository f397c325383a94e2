"""Regression sets (the Playground's reg-plane and reg-gauss): the squared-error loss and R², training
through the engine, the NaN guard, the lab's session and the refusals; the page's drawing is tested in
tests/test_lab.py."""

import json
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradientflow import data, evaluation, job, train
from gradientflow.config import TrainConfig
from gradientflow.data import Dataset
from gradientflow.evaluation import evaluate, loss
from gradientflow.trainer import epoch_order

FAST = dict(data="reg-plane", depth=2, width=32, activation="tanh", init="xavier", optimizer="adam", lr=0.01,
            epochs=3, batch_size=32)


# --- the loss and the score ---

def test_the_regression_loss_and_its_gradient_are_the_mean_squared_error_and_2_e_over_b():
    torch.manual_seed(0)
    out = torch.randn(7, 1, dtype=torch.float64, requires_grad=True)
    y = torch.randn(7, dtype=torch.float64)
    value = loss(out, y)
    value.backward()
    e = out.detach()[:, 0].numpy() - y.numpy()
    assert value.item() == pytest.approx(np.mean(e ** 2), rel=1e-12)  # MSE = (1/B) sum (o - y)^2
    assert np.allclose(out.grad[:, 0].numpy(), 2 * e / len(e), rtol=1e-12)  # d MSE / d o_i = 2 (o_i - y_i) / B
    stacked = torch.randn(3, 7, 1, dtype=torch.float64)  # K = 3 nets: one mean per net
    targets = torch.randn(3, 7, dtype=torch.float64)
    assert torch.allclose(loss(stacked, targets), ((stacked[..., 0] - targets) ** 2).mean(1))
    labels = torch.tensor([0, 2, 1])  # class indices still get the cross-entropy
    logits = torch.randn(3, 3)
    assert loss(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_a_regression_target_with_a_net_of_several_outputs_is_one_line():
    with pytest.raises(ValueError) as err:
        loss(torch.zeros(4, 3), torch.zeros(4))
    assert str(err.value) == "a regression target needs a net with 1 output unit; this one has 3"


def test_evaluate_gives_the_mse_and_the_r2_that_scikit_learn_computes(monkeypatch):
    from sklearn.metrics import mean_squared_error, r2_score

    monkeypatch.setattr(evaluation, "EVAL_BATCH", 7)  # several batches: the sums must add up
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(30, 2)
    y = x.sum(1) + 0.3 * torch.randn(30)
    mse, r2 = evaluate(net, x, y)
    pred = net(x).detach()[:, 0].numpy()
    assert mse == pytest.approx(mean_squared_error(y.numpy(), pred), rel=1e-5)
    assert r2 == pytest.approx(r2_score(y.numpy(), pred), rel=1e-5)
    assert math.isnan(evaluation.r2(0.1, torch.ones(5)))  # equal targets: no variance to explain


# --- the data sets ---

def test_the_regression_sets_are_float_targets_of_the_playgrounds_rules():
    plane = data.load("reg-plane", noise=0.0)
    assert (plane.task, plane.outputs, plane.classes, plane.y_train.dtype) == ("regression", 1, 0, torch.float32)
    assert torch.allclose(plane.y_train, plane.x_train.sum(1) / 10, atol=1e-6)
    gauss = data.load("reg-gauss", noise=0.0, n_train=2000)
    # the Playground's rule: the bump of largest magnitude, sign * max(0, 1 - distance / 2)
    bumps = [(-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1)]
    values = torch.stack([s * (1 - (gauss.x_train - torch.tensor([cx, cy])).norm(dim=1) / 2).clamp(min=0)
                          for cx, cy, s in bumps], 1)
    largest = values.gather(1, values.abs().argmax(1, keepdim=True))[:, 0]
    assert torch.allclose(gauss.y_train, largest, atol=1e-5) and gauss.y_train.abs().max() > 0.9
    noisy = data.load("reg-plane", noise=0.3)
    assert torch.equal(noisy.x_train, plane.x_train) and not torch.allclose(noisy.y_train, plane.y_train)
    assert data.planned("reg-gauss") == (1000, 2, 1)
    assert data.load("xor").task == "classification"


@pytest.mark.parametrize("name", data.REGRESSION)
def test_the_regression_sets_split_at_the_labs_train_share_and_are_seeded(name):
    from gradientflow.lab.session import LabConfig

    d = job.dataset(LabConfig(data=name, train_share=0.3).train_config())
    assert (len(d.y_train), len(d.y_test), d.task) == (300, 700, "regression")
    assert d.describe().endswith("2 features, a real-valued target")
    again, other = data.load(name, seed=3), data.load(name, seed=4)
    assert torch.equal(data.load(name, seed=3).y_train, again.y_train) and not torch.equal(again.y_train, other.y_train)


# --- training ---

def test_a_small_mlp_learns_reg_plane_in_a_few_epochs_and_shuffled_targets_do_not():
    s = job.run(TrainConfig(**FAST))
    assert s.status == "finished" and s.steps == 75, s.message
    assert s.test_r2 > 0.9 and s.test_loss < 0.05, (s.test_r2, s.test_loss)
    assert math.isnan(s.test_accuracy) and math.isnan(s.train_accuracy)  # no accuracy is claimed
    assert set(s.history[-1]) == {"epoch", "step", "train_loss", "test_loss", "test_r2"}
    # the control: the same net and steps on targets shuffled across the training inputs
    cfg = TrainConfig(**FAST)
    d = job.dataset(cfg)
    order = torch.randperm(len(d.y_train), generator=torch.Generator().manual_seed(0))
    shuffled = Dataset(d.name, d.x_train, d.y_train[order], d.x_test, d.y_test, 0)
    control = train.fit(job.network(cfg, shuffled), shuffled, cfg.parts.optimizer, cfg.parts.loop)
    assert control.steps == 75 and control.test_r2 < 0.1, control.test_r2


def test_the_guard_names_the_first_non_finite_layer_of_a_regression_net_at_an_exploding_rate():
    """The engine's message against a plain loop of its own: the same net, batches and SGD, with
    every layer's output checked at every step."""
    cfg = TrainConfig(data="reg-plane", depth=6, width=32, activation="relu", init="he", optimizer="sgd", lr=10.0,
                      epochs=3, batch_size=32)
    s = job.run(cfg)
    assert s.status == "diverged"
    d = job.dataset(cfg)
    net = job.network(cfg, d)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    torch.manual_seed(cfg.seed)
    for step, rows in enumerate(epoch_order(len(d.y_train), cfg.seed, 0).split(cfg.batch_size), 1):
        h, bad = d.x_train[rows], None
        for i, m in enumerate(net):
            h = m(h)
            if bad is None and not torch.isfinite(h).all():
                bad = i
        if bad is not None:
            break
        value = F.mse_loss(h[:, 0], d.y_train[rows])
        opt.zero_grad()
        value.backward()
        assert torch.isfinite(value) and all(torch.isfinite(p.grad).all() for p in net.parameters()), step
        opt.step()
    assert bad is not None, "the plain loop never left the finite numbers"
    name = type(net[bad]).__name__
    assert s.message == f"non-finite values at step {step}: forward output of layer {bad} ({name} '{bad}')"


# --- the lab ---

def _strict_json(frame: dict) -> dict:
    """The frame as the server sends it (``jsontext``), parsed as a browser would: no NaN, no Infinity."""
    from gradientflow import jsontext

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(jsontext.dumps(frame), parse_constant=refuse)


def test_the_lab_trains_a_regression_set_and_its_frames_carry_the_test_r2(tmp_path):
    from gradientflow.lab.session import LabConfig, Session
    from gradientflow.lab.views import session_bytes
    from gradientflow.store import Run

    cfg = LabConfig(data="reg-gauss", depth=3, width=16, optimizer="adam", alpha=0.01, batch_size=32, noise=0.0)
    assert 0 < session_bytes(cfg) < 50e6
    session = Session(cfg)
    try:
        assert session.static["task"] == "regression" and session.net[-1].out_features == 1
        session.play()
        deadline = time.monotonic() + 60
        tests, findings = [], None
        while time.monotonic() < deadline and (len(tests) < 3 or findings is None):
            time.sleep(0.3)
            frame = _strict_json(session.frame())
            tests += frame["tests"]
            findings = frame.get("findings", findings)
        session.pause()
        assert len(tests) >= 3 and isinstance(findings, list)
        assert all(set(t) == {"step", "test_loss", "test_r2"} for t in tests)
        assert tests[-1]["test_r2"] > tests[0]["test_r2"]  # it learns
        b = _strict_json({"b": session.boundary})["b"]
        assert b["task"] == "regression" and len(b["value"]) == b["size"] ** 2 and "label" not in b
        assert b["scale"] == pytest.approx(float(session.data.y_train.abs().max()))
        assert any(isinstance(p[2], float) and p[2] != round(p[2]) for p in b["points"])  # targets, not classes
        kept = Run(session.keep(tmp_path / "kept"))
        assert "test_r2" in kept.epochs()[0] and "test_accuracy" not in kept.status()
        assert kept.status()["test_r2"] == pytest.approx(tests[-1]["test_r2"])
    finally:
        session.close()


def test_the_findings_read_a_regression_net_a_collapsing_tanh_net_vanishes():
    from gradientflow.lab.session import LabConfig, Session

    session = Session(LabConfig(data="reg-plane", depth=10, width=32, activation="tanh", init="normal", std=0.01))
    try:
        session.play()
        kinds: set = set()
        deadline = time.monotonic() + 30
        while "vanishing" not in kinds and time.monotonic() < deadline:
            time.sleep(0.3)
            kinds |= {f["kind"] for f in _strict_json(session.frame()).get("findings", [])}
        assert "vanishing" in kinds, kinds
    finally:
        session.close()


def test_a_lab_session_on_a_regression_set_stops_at_the_layer_the_engine_names():
    from gradientflow.lab.session import LabConfig, Session

    cfg = LabConfig(data="reg-plane", depth=6, width=32, activation="relu", init="he", optimizer="sgd", alpha=10.0,
                    batch_size=32)
    engine = job.run(TrainConfig(data="reg-plane", depth=6, width=32, activation="relu", init="he", optimizer="sgd",
                                 lr=10.0, epochs=3, batch_size=32))
    session = Session(cfg)
    try:
        session.play()
        deadline = time.monotonic() + 30
        while not session.diverged and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.diverged.startswith(engine.message) and "(the page's layer " in session.diverged
        assert _strict_json(session.frame())["diverged"] == session.diverged
    finally:
        session.close()


# --- refusals and the command line ---

def test_the_batched_sweep_refuses_a_regression_set_in_one_line():
    from gradientflow.sweep.batched import refusal

    why = refusal(TrainConfig(data="reg-plane", optimizer="sgd"))
    assert why == "data=reg-plane (batched: classification sets; a regression set trains cell by cell)"
    assert refusal(TrainConfig(data="xor", optimizer="sgd")) is None


def test_the_cli_trains_a_regression_set_and_reports_r2_not_accuracy(tmp_path):
    from click.testing import CliRunner

    from gradientflow.cli import main

    args = ["train", "--data", "reg-plane", "--depth", "2", "--width", "32", "--activation", "tanh", "--init", "xavier",
            "--optimizer", "adam", "--lr", "0.01", "--epochs", "3", "--batch-size", "32", "--quiet"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "test R² 0.9" in res.output and "accuracy" not in res.output
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--json"])
    out = json.loads(res.output)
    assert out["test_r2"] > 0.9 and out["test_accuracy"] is None
    shown = CliRunner().invoke(main, ["runs", "show", str(tmp_path / "a")]).output
    assert "test_r2" in shown
    listed = CliRunner().invoke(main, ["runs", "list", str(tmp_path)])
    assert listed.exit_code == 0 and "test_r2" in listed.output.splitlines()[0], listed.output
    compared = CliRunner().invoke(main, ["runs", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert [row["test_r2"] > 0.9 for row in json.loads(compared.output)] == [True, True]


def test_a_classification_run_lists_no_r2_column(tmp_path):
    from click.testing import CliRunner

    from gradientflow.cli import main

    res = CliRunner().invoke(main, ["train", "--data", "xor", "--depth", "2", "--width", "8", "--epochs", "1", "--quiet",
                                    "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "test_r2" not in CliRunner().invoke(main, ["runs", "list", str(tmp_path)]).output


def test_the_compare_figure_labels_a_regression_runs_score_r2(tmp_path):
    from click.testing import CliRunner

    from gradientflow import plots
    from gradientflow.cli import main
    from gradientflow.store import Run

    for data, name in (("reg-plane", "reg"), ("xor", "cls")):
        res = CliRunner().invoke(main, ["train", "--data", data, "--depth", "2", "--width", "8", "--epochs", "2",
                                        "--quiet", "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    assert plots.run_curves([Run(tmp_path / "reg")]).axes[1].get_ylabel() == "test R²"
    assert plots.run_curves([Run(tmp_path / "cls")]).axes[1].get_ylabel() == "test accuracy"
    both = plots.run_curves([Run(tmp_path / "reg"), Run(tmp_path / "cls")]).axes
    assert both[1].get_ylabel() == "test R² or accuracy" and "squared error" in both[0].get_ylabel()
