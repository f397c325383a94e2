"""Issues 14 and 33: the lab's speed, on a small set-up (10 x 100 tanh, MNIST-1D) and a large one
(50 x 500 tanh on the spiral, whose decision boundary the page draws):

- training speed: steps per second of a lab session playing for ``--seconds`` on the machine's torch
  threads (as a server's only session does) while its frames are taken 15 times a second (as the
  server's sender takes them), against ``gradientflow train``'s own loop on the same configuration
  with probes on (``job.run``: ``train.fit`` with ``watch`` every step, a run store written), with
  the machine's threads and with one. The baseline runs in a child process, as the command does: a
  thread that ran torch on two threads keeps an OpenMP worker, which would slow the session's own
  (``lab.server._off_loop``). ``--rounds`` alternate the two; the ratio is of their medians;
- refresh rate: frames per second a WebSocket client receives from a real server (uvicorn) while
  the session plays, and the time from its pause to the first frame that shows it.

Run: .venv/bin/python benchmarks/lab.py [--setup small|large] [--seconds 6] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

SETUPS = {"small": {"data": "mnist1d", "depth": 10, "width": 100, "activation": "tanh", "init": "xavier",
                    "optimizer": "sgd", "alpha": 0.05, "batch_size": 64},
          # deep and wide on 2-D data: the page also draws the decision boundary
          "large": {"data": "spiral", "depth": 50, "width": 500, "activation": "tanh", "init": "xavier",
                    "optimizer": "sgd", "alpha": 0.01, "batch_size": 64}}
SETUP = SETUPS["small"]


def train_speed(seconds: float) -> float:
    """``gradientflow train``'s loop, probes on: steps per second over about ``seconds``."""
    from gradientflow import job
    from gradientflow.lab.session import LabConfig

    cfg = LabConfig(**SETUP).train_config().replace(probe=True, probe_every=1, epochs=1)
    job.run(cfg)  # warm-up, and the length of one epoch
    epochs = 1
    while True:
        with tempfile.TemporaryDirectory() as tmp:
            summary = job.run(cfg.replace(epochs=epochs), f"{tmp}/run")
        if summary.seconds >= seconds or epochs >= 64:
            return summary.steps / summary.seconds
        epochs = max(epochs + 1, int(epochs * seconds / max(summary.seconds, 1e-3)) + 1)


def train_speed_apart(setup: str, seconds: float, threads: int) -> float:
    """``train_speed`` in a child process on ``threads`` torch threads."""
    out = subprocess.run([sys.executable, __file__, "--setup", setup, "--seconds", str(seconds), "--baseline", str(threads)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def lab_speed(seconds: float, threads: int) -> float:
    """A session on ``threads`` torch threads, made and framed from this thread as the server's workers
    do (on one torch thread: ``lab.server._off_loop``)."""
    import torch

    from gradientflow.lab.session import LabConfig, Session

    torch.set_num_threads(1)
    session = Session(LabConfig(**SETUP), threads=threads)
    try:
        session.play()
        time.sleep(0.5)  # past the first steps' allocations
        start_step, start = session.step_count, time.perf_counter()
        while time.perf_counter() - start < seconds:
            time.sleep(1 / 15)
            session.frame()
        return (session.step_count - start_step) / (time.perf_counter() - start)
    finally:
        session.close()


def frame_rate(seconds: float) -> tuple[float, float]:
    """Frames a second a WebSocket client receives (acknowledging each, as the page does) while the
    session plays, and the seconds from its pause to the first frame that shows it."""
    import uvicorn
    import websockets

    from gradientflow.lab.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        server = uvicorn.Server(uvicorn.Config(create_app(tmp), host="127.0.0.1", port=port, log_level="warning",
                                               ws="websockets-sansio"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)

        async def count() -> tuple[float, float]:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**24) as ws:
                await ws.send(json.dumps({"type": "config", "config": SETUP}))
                await ws.send(json.dumps({"type": "play"}))
                frames, start, asked = 0, None, None
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] != "frame":
                        continue
                    await ws.send(json.dumps({"type": "ack"}))  # as the page does once it has drawn the frame
                    if asked is not None and not message["playing"]:
                        return frames / (asked - start), time.perf_counter() - asked
                    if start is None:
                        start = time.perf_counter()
                        continue
                    frames += 1
                    if asked is None and time.perf_counter() - start >= seconds:
                        asked = time.perf_counter()  # then: how long until a frame shows the pause
                        await ws.send(json.dumps({"type": "pause"}))

        try:
            return asyncio.run(count())
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--setup", choices=sorted(SETUPS), default="small",
                        help="small: 10 x 100 on MNIST-1D; large: 50 x 500 on the spiral (with the decision boundary)")
    parser.add_argument("--baseline", type=int, help=argparse.SUPPRESS)  # the child: train_speed on this many threads
    args = parser.parse_args()
    global SETUP
    SETUP = SETUPS[args.setup]
    warnings.filterwarnings("ignore")
    import torch

    if args.baseline:
        torch.set_num_threads(args.baseline)
        print(train_speed(args.seconds))
        return
    threads = torch.get_num_threads()
    rounds: dict[str, list[float]] = {"train": [], "train_one_thread": [], "lab": []}
    for _ in range(args.rounds):
        rounds["train"].append(train_speed_apart(args.setup, args.seconds, threads))
        rounds["train_one_thread"].append(train_speed_apart(args.setup, args.seconds, 1))
        rounds["lab"].append(lab_speed(args.seconds, threads))
    train, train_one, lab = (statistics.median(rounds[k]) for k in ("train", "train_one_thread", "lab"))
    fps, pause = frame_rate(args.seconds)
    result = {"setup": SETUP, "threads": threads, "rounds": rounds, "train_steps_per_second": train,
              "train_one_thread_steps_per_second": train_one, "lab_steps_per_second": lab, "ratio": lab / train,
              "ratio_one_thread": lab / train_one, "frames_per_second": fps, "pause_seconds": pause}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    each = "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in rounds.items())
    print(f"medians of {args.rounds} rounds ({each}): gradientflow train (probes on) {train:.1f} steps/s "
          f"({train_one:.1f} on one thread); lab session {lab:.1f} steps/s ({lab / train:.2f}x); page refresh: "
          f"{fps:.1f} frames/s; pause shown after {pause:.2f} s")


if __name__ == "__main__":
    main()
