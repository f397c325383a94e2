"""Issue 16: what the trainer callbacks cost: each trainer's step time with and without the callback
(``every=10``, its run stored), rounds alternating the two, the ratio of the medians, as a user sees
it (the trainer's own per-step work included in both).

- ``--trainer lightning``: a tanh MLP of 6 hidden layers of 256 units (64 inputs, 10 classes, batch
  128, SGD) trained by ``lightning.Trainer`` for one epoch of ``--steps`` batches, with
  ``GradientflowCallback``; the whole ``fit`` call timed.
- ``--trainer transformers``: a small BERT (4 layers, hidden 128, 4 heads, intermediate 512,
  sequences of 64 tokens, batch 16) trained by ``transformers.Trainer`` for ``--steps`` optimiser
  steps, with ``watch_trainer``; the time ``train()`` reports (``train_runtime``), its logging
  every 50 steps included in both.

Run: .venv/bin/python benchmarks/callbacks.py --trainer lightning|transformers [--rounds 5] [--steps 100] [--every 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

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


def lightning_seconds(steps: int, every: int | None) -> float:
    import lightning.pytorch as pl

    from gradientflow.integrations.lightning import GradientflowCallback

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps * BATCH, FEATURES, generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.randint(0, CLASSES, (len(x),), generator=g)),
                                         batch_size=BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = [GradientflowCallback(out=f"{tmp}/run", every=every)] if every is not None else []
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False, callbacks=callbacks)
        net = module()
        start = time.perf_counter()
        trainer.fit(net, loader)
        return (time.perf_counter() - start) / steps


def transformers_seconds(steps: int, every: int | None) -> float:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from gradientflow.integrations.transformers import watch_trainer

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4,
                                                     num_attention_heads=4, intermediate_size=512,
                                                     max_position_embeddings=64, num_labels=2))
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(1, 1000, (64,), generator=g), "labels": int(i % 2)} for i in range(16 * steps)]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=f"{tmp}/hf", per_device_train_batch_size=16, max_steps=steps,
                                 logging_steps=50, report_to="none", save_strategy="no", use_cpu=True,
                                 disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=data)
        if every is not None:
            watch_trainer(trainer, out=f"{tmp}/gf", every=every)
        return trainer.train().metrics["train_runtime"] / steps


TRAINERS = {"lightning": lightning_seconds, "transformers": transformers_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trainer", choices=sorted(TRAINERS), required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    seconds = TRAINERS[args.trainer]
    seconds(5, None)  # warm-up: imports, first allocations
    bare, watched = [], []
    for _ in range(args.rounds):
        bare.append(seconds(args.steps, None))
        watched.append(seconds(args.steps, args.every))
    result = {"trainer": args.trainer, "steps": args.steps, "every": args.every, "threads": torch.get_num_threads(),
              "bare_ms_per_step": 1e3 * statistics.median(bare), "callback_ms_per_step": 1e3 * statistics.median(watched)}
    result["ratio"] = result["callback_ms_per_step"] / result["bare_ms_per_step"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.trainer}: {result['bare_ms_per_step']:.2f} ms/step bare, {result['callback_ms_per_step']:.2f} ms/step "
          f"with the callback (every={args.every}): {result['ratio']:.3f}x")


if __name__ == "__main__":
    main()
