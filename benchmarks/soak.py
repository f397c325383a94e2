"""Issue 17: a long run with probes on keeps the process's memory flat.

20,000 steps of a 4 x 64 ReLU MLP on MNIST-1D (batch 32), probes on every step (one window per
epoch), run store on (metrics, probe tables and a checkpoint every 500 steps). The resident set
size (``/proc/self/statm``) is sampled every 500 steps by an observer. Memory is flat when the
last quarter's samples sit within a small band of the second quarter's (the first quarter holds
the allocator's and the caches' warm-up).

Run: .venv/bin/python benchmarks/soak.py [--steps 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from gradientflow import job
from gradientflow.config import TrainConfig
from gradientflow.train import Observer

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class Memory(Observer):
    """Samples the resident set size every ``every`` steps."""

    def __init__(self, every: int):
        self.every, self.samples = every, []

    def after_backward(self, step: int) -> None:
        if step % self.every == 0:
            self.samples.append((step, rss_mib()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    per_epoch = 4000 // 32 + (4000 % 32 > 0)  # MNIST-1D's 4,000 training samples
    epochs = -(-args.steps // per_epoch)
    cfg = TrainConfig(data="mnist1d", depth=4, width=64, activation="relu", batch_size=32, epochs=epochs,
                      checkpoint_every=500, probe=True)
    memory = Memory(500)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = job.run(cfg, Path(tmp) / "soak", observers=(memory,))
        seconds = time.perf_counter() - started
        files = sum(p.stat().st_size for p in (Path(tmp) / "soak").rglob("*") if p.is_file()) / 2**20
    steps = [s for s, _ in memory.samples]
    mib = [m for _, m in memory.samples]
    q = len(mib) // 4
    second, last = mib[q:2 * q], mib[-q:]
    result = {"steps": summary.steps, "seconds": round(seconds, 1), "store_mib": round(files, 1),
              "rss_mib_first": round(mib[0], 1), "rss_mib_second_quarter_median": round(statistics.median(second), 1),
              "rss_mib_last_quarter_median": round(statistics.median(last), 1), "rss_mib_max": round(max(mib), 1),
              "growth_mib_second_to_last_quarter": round(statistics.median(last) - statistics.median(second), 1),
              "samples": list(zip(steps, [round(m, 1) for m in mib]))}
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if key != "samples":
            print(f"{key}: {value}")
    print("rss (MiB) every 500 steps:", " ".join(f"{m:.0f}" for m in mib))


if __name__ == "__main__":
    main()
