import math

import pytest
import torch
from torch import nn

from gradientflow import data, guard, job, train, trainer
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


def test_batches_are_the_epoch_order_s_rows_gathered_a_block_at_a_time(monkeypatch):
    d = data.load("digits", n_train=100, n_test=10)
    net = nn.Sequential(nn.Linear(64, 10))
    loop = trainer.Trainer(net, d, train.OptimizerSpec(), train.LoopSpec(batch_size=32))
    monkeypatch.setattr(trainer, "GATHER_BYTES", 3 * 32 * (64 * 4 + 8))  # three batches per gather
    order = train.epoch_order(100, 0, 0)
    for first in (0, 1, 3):
        got = list(loop.batches(order, first))
        assert [b for b, _, _ in got] == list(range(first, 4))  # 100 rows: the last batch has 4
        for b, xb, yb in got:
            idx = order[b * 32:(b + 1) * 32]
            assert torch.equal(xb, d.x_train[idx]) and torch.equal(yb, d.y_train[idx])


def test_gathering_in_blocks_changes_no_number_even_across_a_resume(tmp_path, monkeypatch):
    cfg = TrainConfig(**SMALL, checkpoint_every=7, optimizer="momentum", lr=0.05)
    whole = job.run(cfg, tmp_path / "whole")  # one gather per epoch
    monkeypatch.setattr(trainer, "GATHER_BYTES", 3 * 32 * (64 * 4 + 8))  # three batches per gather
    cut = job.run(cfg, tmp_path / "cut", observers=(StopAt(17),))  # resumes at step 14: batch 4, inside a block
    resumed = job.resume(tmp_path / "cut")
    assert resumed.history == whole.history
    a, b = _final_weights(Run(tmp_path / "whole")), _final_weights(Run(tmp_path / "cut"))
    assert cut.steps == 16 and all(torch.equal(a[k], b[k]) for k in a)


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


class ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


class PoisonBackward(nn.Module):
    def forward(self, x):
        return ScaleGrad.apply(x, float("nan"))


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


class ExplodeOnSample(nn.Module):
    """A Linear layer whose gradient explodes (x 1e30: finite entries, an overflowing norm) whenever the batch
    holds the input ``marker``."""

    def __init__(self, marker):
        super().__init__()
        self.linear, self.marker = nn.Linear(64, 16), marker

    def forward(self, x):
        h = self.linear(x)
        return ScaleGrad.apply(h, 1e30) if (x == self.marker).all(1).any() else h


def _step5_sample():
    """A training sample that falls in step 5's batch (batch 16, 96 samples, seed 0)."""
    d = data.load("digits", n_train=96, n_test=32)
    return d.x_train[train.epoch_order(96, 0, 0)[4 * 16]]


def _checked_every_step(monkeypatch):
    """Make ``fit`` check every step one by one, as the engine did before the guard was deferred."""
    plain = train._Loop.run_to_end

    def every_step(self, bar):
        self.trainer.strict_until = 10**9
        return plain(self, bar)

    monkeypatch.setattr(train._Loop, "run_to_end", every_step)


DIVERGING = {
    "forward overflow": lambda: nn.Sequential(nn.Linear(64, 16), Exp(), nn.Linear(16, 10)),
    "nan gradient": lambda: nn.Sequential(nn.Linear(64, 16), PoisonBackward(), nn.Linear(16, 10)),
    "huge rate": lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
    "adam, gradient norm overflows at step 5": lambda: nn.Sequential(ExplodeOnSample(_step5_sample()), nn.Linear(16, 10)),
}


@pytest.mark.parametrize("case", DIVERGING)
@pytest.mark.parametrize("guard_every", [1, 3, 256])
def test_the_deferred_guard_stops_where_a_check_at_every_step_does(tmp_path, monkeypatch, case, guard_every):
    """The guard reads the device every GUARD_EVERY steps, rolls back and replays; the outcome (step,
    message, weights, history, stored rows) must equal that of a check after every backward pass."""
    kw = dict(optimizer="sgd", lr=900.0) if case == "huge rate" else dict(optimizer="adam") if case.startswith("adam") \
        else {}
    if case == "forward overflow":
        kw["lr"] = 1e-3

    def run(folder):
        torch.manual_seed(0)
        net = DIVERGING[case]()
        if case == "forward overflow":
            nn.init.constant_(net[0].weight, 50.0)
        d = data.load("digits", n_train=96, n_test=32)
        cfg = TrainConfig(data="digits", batch_size=16, epochs=3, checkpoint_every=4, grad_norm_every=1, **kw)
        summary = train.fit(net, d, cfg.parts.optimizer, cfg.parts.loop, run=Run.create(folder, cfg.model_dump()))
        return summary, net, _rows(Run(folder))

    monkeypatch.setattr(guard, "GUARD_EVERY", guard_every)
    deferred, net, rows = run(tmp_path / "deferred")
    _checked_every_step(monkeypatch)
    each, net_each, rows_each = run(tmp_path / "each")
    assert deferred.status == each.status == "diverged", (deferred.message, each.message)
    assert (deferred.steps, deferred.message, deferred.history) == (each.steps, each.message, each.history)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net_each.state_dict().values()))
    assert rows == rows_each
    if case.startswith("adam"):
        assert deferred.steps == 4 and "total gradient norm overflows" in deferred.message


def test_a_finished_run_is_the_same_with_the_deferred_guard(monkeypatch):
    cfg = TrainConfig(**SMALL, checkpoint_every=7)
    a = job.run(cfg)
    _checked_every_step(monkeypatch)
    b = job.run(cfg)
    assert a.history == b.history and a.steps == b.steps == 30


def test_the_gradient_norm_is_logged_every_k_steps_and_is_the_norm_of_that_steps_gradient(tmp_path):
    cfg = TrainConfig(**SMALL, grad_norm_every=4, optimizer="sgd", lr=0.01)
    net, d = job.prepare(cfg)
    first = train.epoch_order(len(d.y_train), cfg.seed, 0)[:cfg.batch_size]
    twin = job.prepare(cfg)[0]  # the same initial weights: compute step 1's gradient by hand
    nn.functional.cross_entropy(twin(d.x_train[first]), d.y_train[first]).backward()
    by_hand = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in twin.parameters()])).item()
    job.train(cfg, net, d, run=Run.create(tmp_path / "r", cfg.model_dump()))
    steps, norms = Run(tmp_path / "r").series("grad_norm")
    assert steps == [1, 5, 9, 13, 17, 21, 25, 29]
    assert norms[0] == pytest.approx(by_hand, rel=1e-5)
    assert Run(tmp_path / "r").series("loss")[0] == list(range(1, 31))
