"""Issue 29: the probes on the zoo (``tests/zoo.py``: Hugging Face models from small configs). Per model:
its rows, the modules it skips, the findings when healthy and when a fault is planted (30 steps at a
learning rate of 50: divergence), and the step time watched with ``every=1`` and ``every=10`` as
ratios to the bare step in the same process (rounds interleaved, medians).

Run: .venv/bin/python benchmarks/zoo.py [--json] [--rounds 5] [--steps 20] [--models llama,gpt2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import zoo  # noqa: E402

from gradientflow.probes import watch  # noqa: E402


def timed(model, entry, batch, opt, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        entry.loss(model, batch).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def measure(name: str, rounds: int, steps: int) -> dict:
    entry = zoo.ZOO[name]
    torch.manual_seed(0)
    model = entry.make().train()
    batch = entry.batch(torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=entry.lr)
    variants = {"bare": contextlib.nullcontext, "every_1": lambda: watch(model, every=1),
                "every_10": lambda: watch(model, every=10)}
    timed(model, entry, batch, opt, 3)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for key, make in variants.items():
            with make() as probe:
                times[key].append(timed(model, entry, batch, opt, steps))
            if probe is not None:
                probe.summary()
    _, found, _ = zoo.train(entry, steps=30)
    _, planted, _ = zoo.train(entry, steps=30, lr=50.0)
    with watch(model) as probe:
        entry.loss(model, batch).backward()
        rows = len(probe.summary())
        skipped = len(probe.skipped)
    bare = statistics.median(times["bare"])
    return {"model": name, "rows": rows, "skipped": skipped, "healthy_findings": len(found),
            "planted_findings": [f"{f.kind} at {f.layers[0]}" for f in planted],
            "bare_ms": bare * 1e3, **{f"{k}_ratio": statistics.median(v) / bare for k, v in times.items() if k != "bare"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default=",".join(zoo.ZOO))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results = [measure(name, args.rounds, args.steps) for name in args.models.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| model | rows | skipped | findings when healthy | findings when planted (lr 50) | bare step | every=1 | "
          "every=10 |\n|---|---:|---:|---:|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['rows']} | {r['skipped']} | {r['healthy_findings']} | "
              f"{'; '.join(r['planted_findings']) or 'none'} | {r['bare_ms']:.1f} ms | {r['every_1_ratio']:.2f} | "
              f"{r['every_10_ratio']:.2f} |")


if __name__ == "__main__":
    main()
