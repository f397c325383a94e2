"""Issue 18: where the engine's time goes beyond a hand-written loop, piece by piece, on one net.

``train_step.py`` gives the ratios; this script splits the gap into what ``train.fit`` does per step,
per epoch and per fit, each timed alone in the same process (medians over repetitions):

- per step: ``Trainer.train_step`` on ``Trainer.batches`` against the hand loop's step on the same
  batches, in interleaved blocks of one epoch (the engine's log kept, its guard read left out);
- per epoch: the guard's read of one epoch's kept steps (``StepLog.read``, right after the epoch, as in
  ``fit``), the state check before a snapshot, the snapshot, the test evaluation;
- per fit with the run store: the wait for the last writes when ``fit`` ends (``store.writer.Writer.close``)
  and the store thread's CPU time.

Run: .venv/bin/python benchmarks/train_costs.py [--net small|large] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch
import torch.nn.functional as F

from gradientflow import train
from gradientflow.guard import StepLog
from gradientflow.store.writer import Writer
from train_step import NETS, engine, engine_loop, setup  # the sibling benchmark's nets and its timing of fit


def _median_us(values: list[float]) -> float:
    return statistics.median(values) * 1e6


def per_step_and_epoch(name: str, repeats: int) -> dict:
    _, _, _, batch, per_epoch, _ = NETS[name]
    d, net, loop = engine_loop(name)
    order = train.epoch_order(len(d.y_train), 0, 0)
    batches = [order[b * batch:(b + 1) * batch] for b in range(per_epoch)]
    x, y, opt = loop.x, loop.y, loop.opt

    def hand() -> None:
        for idx in batches:
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def engine_steps() -> None:
        loop.log = StepLog()  # a fresh log: no guard read falls inside the block
        for _, xb, yb in loop.batches(order, 0):  # as ``fit`` feeds it: rows gathered a block at a time
            loop.train_step(xb, yb)

    timings: dict[str, list[float]] = {k: [] for k in ("hand", "engine", "read", "check", "snapshot", "evaluate")}
    hand()  # warm-up
    engine_steps()
    for _ in range(repeats):
        for key, block in (("hand", hand), ("engine", engine_steps)):
            start = time.perf_counter()
            block()
            timings[key].append((time.perf_counter() - start) / per_epoch)
        for key, call in (("read", loop.log.read), ("check", lambda: loop.check(state=True)),
                          ("snapshot", loop.snapshot),
                          ("evaluate", lambda: train.evaluate(net, loop.x_test, loop.y_test))):
            start = time.perf_counter()
            call()
            timings[key].append(time.perf_counter() - start)
    step_gap = statistics.median(e - h for h, e in zip(timings["hand"], timings["engine"]))
    return {"hand_step_us": _median_us(timings["hand"]), "engine_step_us": _median_us(timings["engine"]),
            "step_overhead_us": step_gap * 1e6, "steps_per_epoch": per_epoch,
            **{f"{k}_us": _median_us(timings[k]) for k in ("read", "check", "snapshot", "evaluate")}}


def store_costs(name: str, repeats: int) -> dict:
    """The end-of-fit wait for the writer and the writer thread's CPU time, per ``fit``."""
    _, _, _, batch, _, epochs = NETS[name]
    d, net = setup(name)
    waits, cpu = [], []
    close, work = Writer.close, Writer._work

    @functools.wraps(close)
    def timed_close(self, **kwargs):
        start = time.perf_counter()
        close(self, **kwargs)
        waits.append(time.perf_counter() - start)

    @functools.wraps(work)
    def timed_work(self):
        start = time.thread_time()
        work(self)
        cpu.append(time.thread_time() - start)

    Writer.close, Writer._work = timed_close, timed_work
    try:
        engine(net, d, batch, 1, torch.device("cpu"), store=True)  # the first conversion imports pandas
        waits.clear()
        cpu.clear()
        for _ in range(repeats):
            engine(net, d, batch, epochs, torch.device("cpu"), store=True)
    finally:
        Writer.close, Writer._work = close, work
    return {"epochs_per_fit": epochs, "final_wait_ms": statistics.median(waits) * 1e3,
            "writer_cpu_ms_per_fit": statistics.median(cpu) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--net", default="small", choices=sorted(NETS))
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {"net": args.net, "threads": torch.get_num_threads(), **per_step_and_epoch(args.net, args.repeats),
              **store_costs(args.net, max(args.repeats // 6, 5))}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:24s} {value:10.1f}" if isinstance(value, float) else f"{key:24s} {value}")


if __name__ == "__main__":
    main()
