"""Wall time of `import gradientflow` and of `gradientflow --help` in fresh processes (median of N).

Run: .venv/bin/python benchmarks/import_time.py [--rounds 7] [--json]
The heavy dependencies (SciPy, pyarrow, DuckDB, pandas, matplotlib, Jinja2) are imported on first
use, so these times are torch's import plus the small core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _wall(args: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    python = sys.executable
    rows = {
        "python -c pass": _wall([python, "-c", "pass"], args.rounds),
        "import torch": _wall([python, "-c", "import torch"], args.rounds),
        "import gradientflow": _wall([python, "-c", "import gradientflow"], args.rounds),
        "gradientflow --help": _wall([python, "-m", "gradientflow.cli", "--help"], args.rounds),
    }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for name, seconds in rows.items():
        print(f"{name:<22} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
