"""Issue 4: what watching costs. The 10 x 500 tanh MLP (500 inputs, 10 classes), batch 256, SGD,
a hand-written loop; each variant's step time as a ratio to the bare step in the same process.

Variants: ``gf.watch`` with the full statistic set every step and every 10th step; naive hooks
that read mean and std of every layer's output back with ``.item()`` every step; TensorBoard's
``add_histogram`` of every layer's output every step (if tensorboard is installed).
Rounds alternate the variants; each figure is the median over rounds.

``--model cnn``: two 3 x 3 convolutions (16 and 32 channels) each with BatchNorm and ReLU, average
pooling and a Linear read-out, on 64 images of 28 x 28. ``--model transformer``: a 4-layer
``nn.TransformerEncoder`` (d_model 64, 4 heads, feed-forward 128, its ReLU called as a function)
on 32 sequences of 32 tokens, mean-pooled into a Linear read-out. For these two only ``watch`` is
compared with the bare step.

``--groups``: also each built-in statistic alone (``watch(stats=[G])``) and the moments alone.

Run: .venv/bin/python benchmarks/probes.py [--json] [--rounds 5] [--steps 20] [--device cpu] [--model mlp|cnn|transformer] [--groups]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from gradientflow import model
from gradientflow.probes import watch

WIDTH, DEPTH, BATCH, FEATURES, CLASSES = 500, 10, 256, 500, 10


def timed_steps(net, opt, x, y, steps: int, device) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


@contextlib.contextmanager
def naive_item_hooks(net):
    """What people write first: a forward hook per layer that reads two numbers back each step."""
    seen = []
    handles = [m.register_forward_hook(lambda m, i, o: seen.append((o.mean().item(), o.std().item())))
               for m in net if isinstance(m, torch.nn.Tanh)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def tensorboard_histograms(net):
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(tmp)
        step = [0]

        def hook(name):
            return lambda m, i, o: writer.add_histogram(name, o.detach(), step[0])

        handles = [m.register_forward_hook(hook(f"layer{k}")) for k, m in enumerate(net) if isinstance(m, torch.nn.Tanh)]
        pre = net.register_forward_pre_hook(lambda m, i: step.__setitem__(0, step[0] + 1))
        try:
            yield
        finally:
            for h in handles + [pre]:
                h.remove()
            writer.close()


class _Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.encoder, self.head = torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False), torch.nn.Linear(64, CLASSES)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def build(name: str):
    """(model, inputs, description) of the benchmark's model ``name``."""
    g = torch.Generator().manual_seed(1)
    if name == "cnn":
        nn = torch.nn
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, CLASSES))
        return net, torch.randn(64, 1, 28, 28, generator=g), "CNN (2 conv + BatchNorm + ReLU), batch 64 of 28x28"
    if name == "transformer":
        return _Encoder(), torch.randn(32, 32, 64, generator=g), "4-layer Transformer encoder (d 64), batch 32 x 32 tokens"
    net = model.mlp(FEATURES, WIDTH, DEPTH, CLASSES, activation="tanh", init_name="xavier",
                    generator=torch.Generator().manual_seed(0))
    return net, torch.randn(BATCH, FEATURES, generator=g), f"10x{WIDTH} tanh MLP, batch {BATCH}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=("mlp", "cnn", "transformer"), default="mlp")
    parser.add_argument("--groups", action="store_true",
                        help="also time watch(every=1, stats=[G]) for each built-in statistic G, and stats=[] "
                             "(the moments alone): what each statistic costs")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net, x, title = build(args.model)
    net, x = net.to(device), x.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    y = torch.randint(0, CLASSES, (len(x),), generator=torch.Generator().manual_seed(1)).to(device)
    variants = {
        "bare": contextlib.nullcontext,
        "watch_every_1": lambda: watch(net, every=1),
        "watch_every_10": lambda: watch(net, every=10),
    }
    if args.groups:
        from gradientflow.probes.stats import GROUPS

        variants["moments_only"] = lambda: watch(net, every=1, stats=[])
        for group in GROUPS:
            variants[f"only_{group}"] = lambda group=group: watch(net, every=1, stats=[group])
    if args.model == "mlp":
        variants["naive_item_hooks"] = lambda: naive_item_hooks(net)
        try:
            import tensorboard  # noqa: F401

            variants["tensorboard_histograms"] = lambda: tensorboard_histograms(net)
        except ImportError:
            pass
    timed_steps(net, opt, x, y, 3, device)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, make in variants.items():
            with make() as probe:
                times[name].append(timed_steps(net, opt, x, y, args.steps, device))
            if hasattr(probe, "summary"):
                probe.summary()  # the read-back at the end of a window, outside the timed steps
    bare = statistics.median(times["bare"])
    result = {"model": args.model, "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "bare_ms_per_step": bare * 1e3,
              **{f"{k}_ratio": statistics.median(v) / bare for k, v in times.items() if k != "bare"},
              "note": "ratio = step time with the variant / bare step time (1.0 = free)"}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{title}, {args.rounds} rounds x {args.steps} steps, {device}: bare step {bare * 1e3:.2f} ms")
    for k, v in times.items():
        if k != "bare":
            print(f"  {k:<24} {statistics.median(v) / bare:7.3f} x bare")


if __name__ == "__main__":
    main()
