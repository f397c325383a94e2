"""Issue 18: what one write on the run store's background thread costs the training thread.

``train.fit`` hands each epoch's checkpoint and metric part to ``store.Run.background``'s writer
thread. The writer shares the GIL with the training thread, and on a 2-core machine it shares the
cores too, so a write "off the step's path" is not free. This script times a block of the small
net's training steps (``train_step.setup("small")``, 40 steps, about 15 ms) with one job submitted
to the writer just before it, against the same block with no job, for jobs of several kinds, and
the same jobs done on the training thread itself. Rounds interleave the kinds; each figure is the
median over rounds of (block with the job) - (block without).

Jobs: ``torch.save`` of the net's snapshot into memory; that snapshot's bytes written atomically
(``store.write_atomic``: temporary file, fsync, rename); the same bytes written without fsync; an
fsync alone; a 1 ms sleep (the thread holds nothing while it sleeps); 10,000 iterations of a Python
loop (pure GIL time, its own time printed beside it).

Run: .venv/bin/python benchmarks/writer_handoff.py [--rounds 60] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time

import torch

from gradientflow import store, train
from train_step import engine_loop


def python_loop() -> None:
    for _ in range(10_000):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    d, _, loop = engine_loop("small")
    order = train.epoch_order(len(d.y_train), 0, 0)
    snapshot = loop.snapshot()
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)
    payload = bytes(buffer.getbuffer())

    def steps() -> None:
        batches = loop.batches(order, 0)
        for _ in range(40):
            _, xb, yb = next(batches)
            loop.train_step(xb, yb)
        loop.log.read()

    with tempfile.TemporaryDirectory() as tmp:
        run = store.Run.create(f"{tmp}/run", {})
        target = run.path / "target.bin"
        target.write_bytes(payload)

        def fsync_only() -> None:
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        jobs = {
            "torch.save (into memory)": lambda: torch.save(snapshot, io.BytesIO()),
            "atomic write with fsync": lambda: store.write_atomic(target, lambda f: f.write(payload)),
            "plain write, no fsync": lambda: target.write_bytes(payload),
            "fsync alone": fsync_only,
            "sleep 1 ms": lambda: time.sleep(0.001),
            "Python loop": python_loop,
        }
        kinds = ["none"] + [f"{where}: {name}" for name in jobs for where in ("writer", "training thread")]
        blocks: dict[str, list[float]] = {k: [] for k in kinds}
        steps()  # warm-up
        with run.background():
            for _ in range(args.rounds):
                for kind in kinds:
                    time.sleep(0.005)  # the previous job has ended
                    where, _, name = kind.partition(": ")
                    start = time.perf_counter()
                    if where == "writer":
                        run._write(jobs[name])
                    elif where == "training thread":
                        jobs[name]()
                    steps()
                    blocks[kind].append(time.perf_counter() - start)
        alone = {}  # each job's own time, on the training thread, nothing else running
        for name, job in jobs.items():
            times = []
            for _ in range(50):
                start = time.perf_counter()
                job()
                times.append(time.perf_counter() - start)
            alone[name] = statistics.median(times) * 1e3
    result = {"rounds": args.rounds, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "block_ms": statistics.median(blocks["none"]) * 1e3,
              "jobs": [{"job": name, "alone_ms": alone[name],
                        **{f"cost_on_{w.replace(' ', '_')}_ms":
                           statistics.median(a - b for a, b in zip(blocks[f"{w}: {name}"], blocks["none"])) * 1e3
                           for w in ("writer", "training thread")}} for name in jobs]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['cpus']} CPUs, {result['threads']} torch threads, {args.rounds} rounds; "
          f"40 small-net steps take {result['block_ms']:.2f} ms")
    print(f"{'job':28s} {'alone':>8s} {'cost, on the writer':>20s} {'cost, on the training thread':>29s}")
    for j in result["jobs"]:
        print(f"{j['job']:28s} {j['alone_ms']:6.3f}ms {j['cost_on_writer_ms']:18.3f}ms {j['cost_on_training_thread_ms']:27.3f}ms")


if __name__ == "__main__":
    main()
