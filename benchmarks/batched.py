"""Issue 15: many small nets at once. 64 tanh MLPs of 3 hidden layers x 64 units on MNIST-1D (SGD,
mean-field init, each its own seed and sigma_w2), trained together by ``sweep.batched.train``
(``torch.func.vmap`` over the stacked weights) against the same 64 trained one after another by
``train.fit`` in the same process. Neither writes a run store; the data set is loaded once for
the one-by-one loop and once inside the batched call (included in its time). Rounds alternate
the two; the table gives the medians.

Run: .venv/bin/python benchmarks/batched.py [--nets 64] [--epochs 2] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from gradientflow import job
from gradientflow.config import TrainConfig
from gradientflow.sweep import batched
from gradientflow.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nets", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cfgs = [TrainConfig(data="mnist1d", depth=3, width=64, activation="tanh", init="meanfield", sigma_b2=0.05,
                        sigma_w2=1.0 + 3.0 * i / args.nets, seed=i, optimizer="sgd", lr=0.05, epochs=args.epochs,
                        batch_size=128) for i in range(args.nets)]
    d = job.dataset(cfgs[0])
    times: dict[str, list[float]] = {"one_by_one": [], "batched": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        for cfg in cfgs:
            fit(job.network(cfg, d), d, cfg.parts.optimizer, cfg.parts.loop)
        times["one_by_one"].append(time.perf_counter() - start)
        start = time.perf_counter()
        batched.train(cfgs)
        times["batched"].append(time.perf_counter() - start)
    steps = len(cfgs) * args.epochs * -(-len(d.y_train) // cfgs[0].batch_size)
    result = {"nets": args.nets, "epochs": args.epochs, "train_samples": len(d.y_train), "threads": torch.get_num_threads(),
              **{k: {"seconds": statistics.median(v), "net_steps_per_second": steps / statistics.median(v)}
                 for k, v in times.items()}}
    result["speedup"] = result["one_by_one"]["seconds"] / result["batched"]["seconds"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k in times:
        print(f"{k:>10}: {result[k]['seconds']:.2f} s, {result[k]['net_steps_per_second']:.0f} net-steps/s")
    print(f"batched is {result['speedup']:.2f}x the one-by-one loop ({args.nets} nets, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
