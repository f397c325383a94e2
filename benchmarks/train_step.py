"""Issue 3: the engine's training step against a hand-written PyTorch loop, same model, same process.

The 10 x 500 tanh MLP (500 inputs, 10 classes, about 2.5 M parameters), batch 256, plain SGD.
Both loops shuffle with a fresh permutation per epoch and index the batch out of one tensor;
the engine also clips (computing the gradient norm), guards against NaN, logs loss, gradient
norm and rate per step, and evaluates a one-sample test split at the end of each epoch.
Rounds alternate hand / engine and the ratio is the median over rounds.

Achieved GFLOP/s counts 6 * batch * parameters per step (forward 2, backward 4) and is set
against the machine's torch GEMM rate on the layer's shape (256 x 500 @ 500 x 500) and on 1024^3.

Run: .venv/bin/python benchmarks/train_step.py [--json] [--rounds 5] [--steps 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from gradientflow import data, model, train
from gradientflow.optim import OptimizerSpec
from gradientflow.train import LoopSpec
from gradientflow.store import Run

WIDTH, DEPTH, BATCH, FEATURES, CLASSES = 500, 10, 256, 500, 10


def hand_loop(net, x, y, steps: int, lr: float, device) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    order = torch.randperm(len(y)).to(device)
    start = time.perf_counter()
    for b in range(steps):
        idx = order[b * BATCH:(b + 1) * BATCH]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def engine(net, d, steps: int, lr: float, device, store: bool) -> float:
    opt, loop = OptimizerSpec(optimizer="sgd", lr=lr), LoopSpec(epochs=1, batch_size=BATCH, device=str(device))
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.create(f"{tmp}/run", {**opt.model_dump(), **loop.model_dump()}) if store else None
        summary = train.fit(net, d, opt, loop, run=run)
    assert summary.steps == steps and summary.status == "finished", summary
    return summary.seconds / steps


def gemm_gflops(device, m: int, k: int, n: int) -> float:
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    t = benchmark.Timer("a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
    t = t.blocked_autorange(min_run_time=1.0).median
    return 2 * m * k * n / t / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    d = data.load("mixture", n_train=BATCH * args.steps, n_test=1, dim=FEATURES, classes=CLASSES)
    net = model.mlp(FEATURES, WIDTH, DEPTH, CLASSES, activation="tanh", init_name="xavier",
                    generator=torch.Generator().manual_seed(0)).to(device)
    params = sum(p.numel() for p in net.parameters())
    x, y = d.x_train.to(device), d.y_train.to(device)
    lr = 1e-3
    hand_loop(net, x, y, 3, lr, device)  # warm-up
    hand, eng, eng_store = [], [], []
    for _ in range(args.rounds):
        hand.append(hand_loop(net, x, y, args.steps, lr, device))
        eng.append(engine(net, d, args.steps, lr, device, store=False))
        eng_store.append(engine(net, d, args.steps, lr, device, store=True))
    h, e, s = (statistics.median(v) for v in (hand, eng, eng_store))
    flops = 6 * BATCH * params
    result = {
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "parameters": params, "batch": BATCH,
        "hand_ms_per_step": h * 1e3, "engine_ms_per_step": e * 1e3, "engine_with_store_ms_per_step": s * 1e3,
        "throughput_ratio": h / e, "throughput_ratio_with_store": h / s,
        "ratios_per_round": [hh / ee for hh, ee in zip(hand, eng)],
        "engine_gflops": flops / e / 1e9, "hand_gflops": flops / h / 1e9, "gemm_gflops_layer": gemm_gflops(device, BATCH, WIDTH, WIDTH),
        "gemm_gflops_1024": gemm_gflops(device, 1024, 1024, 1024),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{params:,} parameters, batch {BATCH}, {args.rounds} rounds of {args.steps} steps, {device}")
    print(f"hand loop            {h * 1e3:8.2f} ms/step  {result['hand_gflops']:6.1f} GFLOP/s")
    print(f"engine               {e * 1e3:8.2f} ms/step  {result['engine_gflops']:6.1f} GFLOP/s  "
          f"throughput ratio {h / e:.3f}")
    print(f"engine + run store   {s * 1e3:8.2f} ms/step  throughput ratio {h / s:.3f}")
    print(f"torch GEMM 256x500 @ 500x500: {result['gemm_gflops_layer']:.1f} GFLOP/s; "
          f"1024^3: {result['gemm_gflops_1024']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
