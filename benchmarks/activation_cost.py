"""C6: the compute cost of each activation in ns per element, as a ratio to ReLU in the same process.

Run: .venv/bin/python benchmarks/activation_cost.py [--json] [--numel N]
Prints a Markdown table (the one in BENCHMARKS.md) or JSON.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from gradientflow.properties import cost_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--numel", type=int, default=1 << 22)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args()
    rows = cost_table(numel=args.numel, min_run_time=args.min_run_time)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"float32, {args.numel:,} elements, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}\n")
    print("| activation | forward ns/el | x ReLU | forward+backward ns/el | x ReLU |")
    print("|---|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: r["forward_vs_relu"]):
        print(f"| {r['name']} | {r['forward_ns']:.3f} | {r['forward_vs_relu']:.2f} | "
              f"{r['forward_backward_ns']:.3f} | {r['forward_backward_vs_relu']:.2f} |")


if __name__ == "__main__":
    main()
