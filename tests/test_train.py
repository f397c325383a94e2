import math

import pytest
import torch
from torch import nn

from gradientflow import data, job, train
from gradientflow.config import TrainConfig
from gradientflow.store import Run

SMALL = dict(data="digits", n_train=320, n_test=100, depth=2, width=32, batch_size=32, epochs=3)


class StopAt(train.Observer):
    """An observer that interrupts the run the way Ctrl-C would (the protocol's defaults for the rest)."""

    def __init__(self, step):
        self.step = step

    def after_backward(self, step):
        if step == self.step:
            raise KeyboardInterrupt


def _final_weights(run: Run) -> dict:
    return torch.load(run.latest_checkpoint()[1], weights_only=False)["model"]


def _rows(run: Run) -> list:
    return sorted(run.metrics().to_pylist(), key=lambda r: (r["step"], r["split"], r["name"]))


@pytest.mark.parametrize("extra", [dict(optimizer="adam", schedule="cosine", warmup_steps=3),
                                   dict(optimizer="momentum", lr=0.05, clip_norm=0.5, schedule="step")])
def test_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path, extra):
    cfg = TrainConfig(**SMALL, checkpoint_every=7, **extra)
    whole = job.run(cfg, tmp_path / "whole")
    cut = job.run(cfg, tmp_path / "cut", observers=(StopAt(17),))
    assert cut.status == "interrupted" and cut.steps == 16 and "continues from step 14" in cut.message
    assert Run(tmp_path / "cut").status()["status"] == "interrupted"
    resumed = job.resume(tmp_path / "cut")
    assert resumed.status == whole.status == "finished" and resumed.steps == whole.steps == 30
    a, b = _final_weights(Run(tmp_path / "whole")), _final_weights(Run(tmp_path / "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(Run(tmp_path / "whole")) == _rows(Run(tmp_path / "cut"))  # every step logged exactly once
    assert resumed.test_loss == whole.test_loss


def test_resume_can_extend_the_run(tmp_path):
    cfg = TrainConfig(**SMALL)
    job.run(cfg, tmp_path / "r")
    more = job.resume(tmp_path / "r", epochs=5)
    assert more.steps == 50 and len(more.history) == 5 and Run(tmp_path / "r").config()["epochs"] == 5


def test_same_seed_same_numbers_and_another_seed_differs():
    cfg = TrainConfig(**SMALL)
    a, b = job.run(cfg), job.run(cfg)
    c = job.run(TrainConfig(**{**SMALL, "seed": 1}))
    assert a.history == b.history and a.history != c.history


def test_metrics_are_in_long_format(tmp_path):
    job.run(TrainConfig(**SMALL), tmp_path / "r")
    run = Run(tmp_path / "r")
    t = run.metrics()
    assert t.column_names == ["step", "epoch", "split", "name", "value"]
    steps, loss = run.series("loss")
    assert steps == list(range(1, 31)) and all(math.isfinite(v) for v in loss)
    assert run.series("accuracy", "test")[0] == [10, 20, 30]
    lr_steps, lr = run.series("lr")
    assert set(lr) == {1e-3}


class Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


class NanGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


class PoisonBackward(nn.Module):
    def forward(self, x):
        return NanGrad.apply(x)


def _fit(model, tmp_path=None, **kw):
    d = data.load("digits", n_train=64, n_test=32)
    cfg = TrainConfig(data="digits", batch_size=32, epochs=2, **kw)
    run = Run.create(tmp_path / "r", cfg.model_dump()) if tmp_path else None
    return train.fit(model, d, cfg.parts.optimizer, cfg.parts.loop, run=run)


def test_nan_guard_names_the_step_and_the_forward_layer(tmp_path):
    first = nn.Linear(64, 16)
    nn.init.constant_(first.weight, 50.0)
    s = _fit(nn.Sequential(first, Exp(), nn.Linear(16, 10)), tmp_path)
    assert s.status == "diverged"
    assert s.message == "non-finite values at step 1: forward output of layer 1 (Exp '1')"
    assert Run(tmp_path / "r").status()["status"] == "diverged"


def test_nan_guard_names_the_gradient_when_the_forward_is_finite():
    s = _fit(nn.Sequential(nn.Linear(64, 16), PoisonBackward(), nn.Linear(16, 10)))
    assert s.status == "diverged" and "gradient w.r.t. the output of layer 0 (Linear '0')" in s.message


def test_divergence_later_in_training_is_caught_at_its_step():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    s = _fit(net, optimizer="sgd", lr=900.0)  # raw 0-16 pixels and a huge rate
    assert s.status == "diverged" and s.steps >= 1 and f"step {s.steps + 1}:" in s.message


def test_locate_nonfinite_reports_nowhere_for_a_healthy_batch():
    net = nn.Sequential(nn.Linear(4, 3))
    assert train.locate_nonfinite(net, torch.ones(2, 4), torch.tensor([0, 1])).startswith("nowhere")


def test_evaluate_counts_over_the_whole_split_in_batches(monkeypatch):
    monkeypatch.setattr(train, "EVAL_BATCH", 7)
    net = nn.Linear(3, 2)
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    loss, acc = train.evaluate(net, x, y)
    with torch.no_grad():
        out = net(x)
    assert loss == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-6)
    assert acc == (out.argmax(1) == y).sum().item() / 20


def test_mnist1d_reaches_the_published_accuracies():
    """mnist1d's README: logistic regression 32%, MLP 68% test accuracy (their MLP: 2 hidden layers
    of 100 ReLU units, Adam, lr 1e-2, batch 100, 6000 steps)."""
    mlp = job.run(TrainConfig(depth=2, width=100, lr=1e-2, batch_size=100, epochs=150))
    linear = job.run(TrainConfig(depth=0, lr=1e-2, batch_size=100, epochs=30))
    assert mlp.test_accuracy >= 0.64, mlp.test_accuracy
    assert 0.27 <= linear.test_accuracy <= 0.40, linear.test_accuracy


def test_a_run_without_a_folder_gets_a_named_one_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(**SMALL, activation="tanh", optimizer="sgd")
    folder = job.default_folder(cfg)
    assert (tmp_path / "runs").is_dir() and folder.startswith("runs/") and folder.endswith("-digits-tanh-sgd")


def test_fit_trains_any_module_from_its_two_specs_and_leaves_the_global_rng_alone():
    from gradientflow.optim import OptimizerSpec
    from gradientflow.train import LoopSpec

    d = data.load("xor", n_train=200, n_test=100)
    net = nn.Sequential(nn.Linear(2, 16), nn.Dropout(0.2), nn.Tanh(), nn.Linear(16, 2))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    s = train.fit(net, d, OptimizerSpec(optimizer="adam", lr=0.05), LoopSpec(epochs=3, batch_size=50))
    assert s.status == "finished" and s.steps == 12 and torch.equal(torch.get_rng_state(), before)
