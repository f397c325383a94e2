"""Issue 16: what the Lightning callback costs. A tanh MLP of 6 hidden layers of 256 units (64 inputs,
10 classes, batch 128, SGD) trained by ``lightning.Trainer`` for one epoch of ``--steps`` batches,
with ``GradientflowCallback(every=10)`` (storing its run) and without it; rounds alternate the two,
and the figure is the ratio of the medians of the whole ``fit`` call's time per step (Lightning's
own per-step work included in both, as a user sees it).

Run: .venv/bin/python benchmarks/lightning_callback.py [--rounds 5] [--steps 100] [--every 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings

import torch

WIDTH, DEPTH, FEATURES, CLASSES, BATCH = 256, 6, 64, 10, 128


def module():
    import lightning.pytorch as pl

    class MLP(pl.LightningModule):
        def __init__(self):
            super().__init__()
            layers, prev = [], FEATURES
            for _ in range(DEPTH):
                layers += [torch.nn.Linear(prev, WIDTH), torch.nn.Tanh()]
                prev = WIDTH
            self.net = torch.nn.Sequential(*layers, torch.nn.Linear(prev, CLASSES))

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return MLP()


def fit_seconds(steps: int, callback) -> float:
    import lightning.pytorch as pl

    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps * BATCH, FEATURES, generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.randint(0, CLASSES, (len(x),), generator=g)),
                                         batch_size=BATCH)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[callback] if callback is not None else [])
    net = module()
    start = time.perf_counter()
    trainer.fit(net, loader)
    return (time.perf_counter() - start) / steps


def main() -> None:
    from gradientflow.integrations.lightning import GradientflowCallback

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    bare, watched = [], []
    fit_seconds(10, None)  # warm-up: imports, first allocations
    for _ in range(args.rounds):
        bare.append(fit_seconds(args.steps, None))
        with tempfile.TemporaryDirectory() as tmp:
            watched.append(fit_seconds(args.steps, GradientflowCallback(out=f"{tmp}/run", every=args.every)))
    result = {"steps": args.steps, "every": args.every, "threads": torch.get_num_threads(),
              "bare_ms_per_step": 1e3 * statistics.median(bare), "callback_ms_per_step": 1e3 * statistics.median(watched)}
    result["ratio"] = result["callback_ms_per_step"] / result["bare_ms_per_step"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Lightning fit: {result['bare_ms_per_step']:.2f} ms/step bare, {result['callback_ms_per_step']:.2f} ms/step "
          f"with GradientflowCallback(every={args.every}): {result['ratio']:.3f}x")


if __name__ == "__main__":
    main()
