"""Issue 6: the wall time of ``gradientflow reproduce --quick`` (every claim, C1-C21) against its budget.

The budget is 3 minutes on a 2-core machine. The run goes through the API in this process, into a
temporary folder, with 1 worker and then with ``--jobs`` workers; it prints each experiment's own
seconds (one torch thread each) and the wall time of the whole catalog, report included.

Run: .venv/bin/python benchmarks/reproduce.py [--jobs 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch

from gradientflow import experiments, report

BUDGET_S = 180.0


def timed(jobs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = experiments.reproduce(tmp, quick=True, seed=0, jobs=jobs)
        report.write(tmp, result["claims"], seed=0, quick=True)
        wall = time.perf_counter() - started
    return {"jobs": jobs, "wall_s": round(wall, 1), "per_experiment_s": result["seconds"],
            "verdicts": {c["id"]: c["verdict"] for c in result["claims"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [timed(1)] + ([timed(args.jobs)] if args.jobs > 1 else [])
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
           "budget_s": BUDGET_S, "runs": runs}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(out["machine"])
    for r in runs:
        print(f"jobs {r['jobs']}: {r['wall_s']:.1f} s wall ({r['wall_s'] / BUDGET_S:.2f} of the {BUDGET_S:.0f} s budget)")
    print("per experiment (s, one thread):", json.dumps(runs[0]["per_experiment_s"]))


if __name__ == "__main__":
    main()
