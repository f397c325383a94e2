"""Issue 15: a sweep's throughput, cells per minute, on 1 and 2 local worker processes, on a Ray
started by the sweep (2 CPUs), and with ``--batched`` (the 8 nets in two batches, one per depth).

The grid: 8 cells (depth 2 and 4, sigma_w2 1 and 2, seeds 0 and 1) of a tanh MLP of width 64 with
the mean-field init on scikit-learn's digits, SGD, 100 epochs of batch 64, each a stored run. Each
setting runs the whole grid into a fresh folder; the wall time includes the workers' start (each
imports torch; with one worker, and batched, the cells run in the calling process) and Ray's.

Run: .venv/bin/python benchmarks/sweep.py [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from gradientflow.sweep import SweepSpec, run_sweep

SPEC = {"base": {"data": "digits", "width": 64, "activation": "tanh", "init": "meanfield", "optimizer": "sgd",
                 "lr": 0.05, "epochs": 100, "batch_size": 64},
        "grid": {"depth": [2, 4], "sigma_w2": [1.0, 2.0], "seed": [0, 1]}}


SETTINGS = {"local, 1 worker": {"workers": 1}, "local, 2 workers": {"workers": 2},
            "ray, 2 CPUs": {"engine": "ray", "workers": 2}, "batched": {"batched": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = SweepSpec.parse(SPEC)
    result = {"cells": len(spec.cells())}
    for label, options in SETTINGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            counts = run_sweep(spec, tmp, **options)
            seconds = time.perf_counter() - start
        assert counts["finished"] == result["cells"], counts
        result[label] = {"seconds": seconds, "cells_per_minute": 60 * result["cells"] / seconds}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for label in SETTINGS:
        r = result[label]
        print(f"{label}: {result['cells']} cells in {r['seconds']:.1f} s, {r['cells_per_minute']:.1f} cells/min")


if __name__ == "__main__":
    main()
