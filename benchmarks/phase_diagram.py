"""Time of the mean-field phase diagram (theory.phase_diagram) on an n x n grid, per activation.

Run: .venv/bin/python benchmarks/phase_diagram.py [--resolution 100 200] [--activations tanh relu elu] [--json]
Each activation's tables are rebuilt for every timing (the cache is cleared), so the figure is
what one `gradientflow theory phase` pays after its imports; the imports are timed apart.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--activations", nargs="+", default=["tanh", "relu", "elu", "selu", "hardtanh"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    import numpy as np
    import scipy.interpolate  # noqa: F401  (the first phase diagram of a process imports these)
    import scipy.optimize.elementwise  # noqa: F401  (imported for its cost, as the first diagram pays it)

    from gradientflow import theory
    rows = [{"what": "imports (numpy, scipy.interpolate, scipy.optimize, gradientflow.theory)",
             "seconds": time.perf_counter() - start}]
    theory.phase_diagram("tanh", 4.0, 0.5, 8)  # warm the quadrature caches and torch's kernels
    for name in args.activations:
        for n in args.resolution:
            theory._length_tables.cache_clear()
            start = time.perf_counter()
            grid = theory.phase_diagram(name, 4.0, 0.5, n)
            rows.append({"what": f"{name} {n}x{n}", "seconds": time.perf_counter() - start,
                         "nan_cells": int(np.isnan(grid["xi_c"]).sum())})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['what']:<40} {r['seconds']:6.2f} s" + (f"  NaN cells: {r['nan_cells']}" if "nan_cells" in r else ""))


if __name__ == "__main__":
    main()
