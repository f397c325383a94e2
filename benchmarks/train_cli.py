"""Issues 18 and 32: ``gradientflow train`` timed from outside against a plain torch loop, each in its own process.

``--net large``: the 10 x 500 tanh MLP on an NPZ of 7,680 samples x 500 features (10 classes), batch
256, 3 epochs. ``--net small``: a 3 x 64 tanh MLP on 4,000 samples x 40 features (MNIST-1D's size),
batch 32, 20 epochs, where fixed costs per step weigh most. Plain SGD, with the run store
(checkpoints by the clock: here the one at the end). ``gradientflow train --json``
reports its own loop time (``seconds``: the whole ``fit``, final writes included); the plain loop
is the same data, net and batches with nothing else. Runs alternate; medians over rounds.

Run: .venv/bin/python benchmarks/train_cli.py [--net large|small] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NETS = {"large": dict(samples=7680, features=500, batch=256, epochs=3, depth=10, width=500),
        "small": dict(samples=4000, features=40, batch=32, epochs=20, depth=3, width=64)}
CLASSES = 10

PLAIN = """
import json, sys, time, numpy as np, torch, torch.nn.functional as F
from gradientflow import model, train
a = np.load(sys.argv[1])
x, y = torch.tensor(a["x_train"]), torch.tensor(a["y_train"]).long()
x = (x - x.mean(0)) / x.std(0)
net = model.mlp({features}, {width}, {depth}, {classes}, activation="tanh", init_name="xavier",
                generator=torch.Generator().manual_seed(0))
opt = torch.optim.SGD(net.parameters(), lr=1e-3)
start = time.perf_counter()
for epoch in range({epochs}):
    order = train.epoch_order(len(y), 0, epoch)
    for b in range(0, len(y), {batch}):
        idx = order[b:b + {batch}]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""  # formatted with the net's sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--net", choices=sorted(NETS), default="large")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    net = NETS[args.net]
    samples, features, batch, epochs = net["samples"], net["features"], net["batch"], net["epochs"]
    steps = -(-samples // batch) * epochs
    plain_code = PLAIN.format(**net, classes=CLASSES)
    exe = Path(sys.executable).parent / "gradientflow"
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        npz = Path(tmp) / "data.npz"
        np.savez(npz, x_train=rng.normal(size=(samples, features)).astype(np.float32),
                 y_train=rng.integers(0, CLASSES, samples), x_test=rng.normal(size=(1, features)).astype(np.float32),
                 y_test=np.zeros(1, dtype=np.int64))
        plain, cli = [], []
        for k in range(args.rounds):
            out = subprocess.run([sys.executable, "-c", plain_code, str(npz)], check=True, capture_output=True, text=True)
            plain.append(json.loads(out.stdout)["seconds"] / steps)
            out = subprocess.run([str(exe), "train", "--data", f"npz:{npz}", "--depth", str(net["depth"]), "--width", str(net["width"]),
                                  "--activation", "tanh", "--init", "xavier", "--optimizer", "sgd", "--lr", "1e-3",
                                  "--batch-size", str(batch), "--epochs", str(epochs), "--out", f"{tmp}/run{k}",
                                  "--quiet", "--json"], check=True, capture_output=True, text=True)
            summary = json.loads(out.stdout)
            assert summary["steps"] == steps, summary
            cli.append(summary["seconds"] / steps)
    p, c = statistics.median(plain), statistics.median(cli)
    result = {"plain_ms_per_step": p * 1e3, "train_cli_ms_per_step": c * 1e3, "throughput_ratio": p / c,
              "ratios_per_round": [round(a / b, 4) for a, b in zip(plain, cli)], "rounds": args.rounds, "net": args.net}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"plain torch loop   {p * 1e3:7.2f} ms/step")
    print(f"gradientflow train {c * 1e3:7.2f} ms/step  ratio {p / c:.3f}  (per round: {result['ratios_per_round']})")


if __name__ == "__main__":
    main()
