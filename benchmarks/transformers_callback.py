"""Issue 16: what the Hugging Face callback costs. A small BERT (4 layers, hidden 128, 4 heads,
intermediate 512, sequences of 64 tokens, batch 16) trained by ``transformers.Trainer`` for
``--steps`` optimiser steps, with ``watch_trainer(trainer, every=10)`` (storing its run) and without;
rounds alternate the two, and the figure is the ratio of the medians of ``train()``'s time per
step as the trainer itself reports it (``train_runtime``), its logging every 50 steps included in both.

Run: .venv/bin/python benchmarks/transformers_callback.py [--rounds 5] [--steps 100] [--every 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def train_seconds(steps: int, every: int | None) -> float:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.utils import logging

    from gradientflow.integrations.transformers import watch_trainer

    logging.set_verbosity_error()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    train_seconds(5, None)  # warm-up
    bare, watched = [], []
    for _ in range(args.rounds):
        bare.append(train_seconds(args.steps, None))
        watched.append(train_seconds(args.steps, args.every))
    result = {"steps": args.steps, "every": args.every, "threads": torch.get_num_threads(),
              "bare_ms_per_step": 1e3 * statistics.median(bare), "callback_ms_per_step": 1e3 * statistics.median(watched)}
    result["ratio"] = result["callback_ms_per_step"] / result["bare_ms_per_step"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"HF Trainer: {result['bare_ms_per_step']:.2f} ms/step bare, {result['callback_ms_per_step']:.2f} ms/step "
          f"with watch_trainer(every={args.every}): {result['ratio']:.3f}x")


if __name__ == "__main__":
    main()
