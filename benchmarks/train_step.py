"""Issue 18: the engine's training step against a hand-written PyTorch loop, same model, same process.

Two nets, plain SGD, data indexed out of one tensor with a fresh permutation per epoch in both loops:

- ``large``: the 10 x 500 tanh MLP (500 inputs, 10 classes, about 2.5 M parameters), batch 256;
- ``small``: a 3 x 64 tanh MLP on 40 inputs (MNIST-1D's size), batch 32, where fixed costs per
  step weigh most.

Each ``fit`` call is timed from outside, so everything a run pays is counted: building the
optimiser, the NaN guard, the per-step log, the epoch's test evaluation (a one-sample test split),
the snapshots, and with the store the run's files (written by the background writer) up to the last
one landing on disk. The hand loop is forward, cross-entropy, zero_grad, backward and step, nothing
else; it indexes each batch out of the data. ``fit`` gathers a block of batches at once and slices
them, which saves two small operations a step: the ratios are also given against a hand loop that
does the same (``gathered``), which leaves the engine's bookkeeping alone in the gap. Rounds
alternate hand / hand gathered / engine / engine + store and each ratio is the median over rounds.

Achieved GFLOP/s counts 6 * batch * parameters per step (forward 2, backward 4) and is set against
the machine's torch GEMM rate on the large net's layer shape (256 x 500 @ 500 x 500) and on 1024^3.

Run: .venv/bin/python benchmarks/train_step.py [--json] [--rounds 7] [--nets large,small] [--device cpu]
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
from gradientflow.store import Run
from gradientflow.train import LoopSpec

# name: (inputs, width, depth, batch, steps per epoch, epochs)
NETS = {"large": (500, 500, 10, 256, 30, 2), "small": (40, 64, 3, 32, 125, 4)}
CLASSES, LR = 10, 1e-3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hand_loop(net, x, y, batch: int, epochs: int, device, gathered: bool = False) -> float:
    """Seconds per step of the plainest loop that trains the same way: each step indexes its batch out
    of the data; ``gathered``, the epoch's rows are indexed once and each step slices them (as
    ``train.fit`` does, a block at a time)."""
    _sync(device)
    start = time.perf_counter()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    steps = 0
    for epoch in range(epochs):
        order = train.epoch_order(len(y), 0, epoch).to(device)
        xs, ys = (x[order], y[order]) if gathered else (x, y)
        for b in range(0, len(y), batch):
            rows = slice(b, b + batch) if gathered else order[b:b + batch]
            loss = F.cross_entropy(net(xs[rows]), ys[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    _sync(device)
    return (time.perf_counter() - start) / steps


def engine(net, d, batch: int, epochs: int, device, store: bool) -> float:
    """Seconds per step of ``train.fit``, the whole call."""
    opt, loop = OptimizerSpec(optimizer="sgd", lr=LR), LoopSpec(epochs=epochs, batch_size=batch, device=str(device))
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.create(f"{tmp}/run", {**opt.model_dump(), **loop.model_dump()}) if store else None
        _sync(device)
        start = time.perf_counter()
        summary = train.fit(net, d, opt, loop, run=run)
        _sync(device)
        seconds = time.perf_counter() - start
    assert summary.status == "finished", summary
    return seconds / summary.steps


def gemm_gflops(device, m: int, k: int, n: int) -> float:
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    t = benchmark.Timer("a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
    t = t.blocked_autorange(min_run_time=1.0).median
    return 2 * m * k * n / t / 1e9


def setup(name: str, device: torch.device = torch.device("cpu")) -> tuple[data.Dataset, torch.nn.Module]:
    """The net ``name`` (``NETS``) and its data: one epoch of a Gaussian mixture, a one-sample test split."""
    inputs, width, depth, batch, per_epoch, _ = NETS[name]
    d = data.load("mixture", n_train=batch * per_epoch, n_test=1, dim=inputs, classes=CLASSES)
    net = model.mlp(inputs, width, depth, CLASSES, activation="tanh", init_name="xavier",
                    generator=torch.Generator().manual_seed(0)).to(device)
    return d, net


def engine_loop(name: str) -> tuple[data.Dataset, torch.nn.Module, train.Trainer]:
    """The net ``name``, its data and ``fit``'s trainer on them (plain SGD, no run store, no
    observers), for timing the loop's parts one by one."""
    d, net = setup(name)
    loop = train.Trainer(net, d, OptimizerSpec(optimizer="sgd", lr=LR), LoopSpec(epochs=10**6, batch_size=NETS[name][3]))
    return d, net, loop


def measure(name: str, rounds: int, device: torch.device) -> dict:
    _, _, _, batch, per_epoch, epochs = NETS[name]
    d, net = setup(name, device)
    x, y = d.x_train.to(device), d.y_train.to(device)
    hand_loop(net, x, y, batch, 1, device)  # warm-up
    engine(net, d, batch, 1, device, store=True)
    hand, gathered, eng, eng_store = [], [], [], []
    for _ in range(rounds):
        hand.append(hand_loop(net, x, y, batch, epochs, device))
        gathered.append(hand_loop(net, x, y, batch, epochs, device, gathered=True))
        eng.append(engine(net, d, batch, epochs, device, store=False))
        eng_store.append(engine(net, d, batch, epochs, device, store=True))
    h, e, s = (statistics.median(v) for v in (hand, eng, eng_store))
    params = sum(p.numel() for p in net.parameters())
    return {"net": name, "parameters": params, "batch": batch, "steps_per_fit": per_epoch * epochs,
            "hand_ms_per_step": h * 1e3, "engine_ms_per_step": e * 1e3, "engine_with_store_ms_per_step": s * 1e3,
            "throughput_ratio": statistics.median(hh / ee for hh, ee in zip(hand, eng)),
            "throughput_ratio_with_store": statistics.median(hh / ss for hh, ss in zip(hand, eng_store)),
            "hand_gathered_ms_per_step": statistics.median(gathered) * 1e3,
            "throughput_ratio_vs_gathered": statistics.median(gg / ee for gg, ee in zip(gathered, eng)),
            "throughput_ratio_with_store_vs_gathered": statistics.median(gg / ss for gg, ss in zip(gathered, eng_store)),
            "ratios_per_round": [round(hh / ee, 4) for hh, ee in zip(hand, eng)],
            "ratios_with_store_per_round": [round(hh / ss, 4) for hh, ss in zip(hand, eng_store)],
            "hand_gflops": 6 * batch * params / h / 1e9, "engine_gflops": 6 * batch * params / e / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--nets", default="large,small")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    results = [measure(name, args.rounds, device) for name in args.nets.split(",")]
    result = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "rounds": args.rounds, "nets": results,
              "gemm_gflops_layer": gemm_gflops(device, 256, 500, 500), "gemm_gflops_1024": gemm_gflops(device, 1024, 1024, 1024)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{device}, {result['threads']} threads, torch {torch.__version__}, {args.rounds} rounds (medians)")
    for r in results:
        print(f"{r['net']:6s} {r['parameters']:>10,} parameters, batch {r['batch']}, {r['steps_per_fit']} steps per fit")
        print(f"  hand loop          {r['hand_ms_per_step']:8.3f} ms/step  {r['hand_gflops']:6.1f} GFLOP/s")
        print(f"  hand, gathered     {r['hand_gathered_ms_per_step']:8.3f} ms/step")
        print(f"  engine             {r['engine_ms_per_step']:8.3f} ms/step  ratio {r['throughput_ratio']:.3f}"
              f"  (to the gathered hand loop {r['throughput_ratio_vs_gathered']:.3f})")
        print(f"  engine + store     {r['engine_with_store_ms_per_step']:8.3f} ms/step  ratio "
              f"{r['throughput_ratio_with_store']:.3f}  (to the gathered hand loop {r['throughput_ratio_with_store_vs_gathered']:.3f})")
    print(f"torch GEMM 256x500 @ 500x500: {result['gemm_gflops_layer']:.1f} GFLOP/s; "
          f"1024^3: {result['gemm_gflops_1024']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
