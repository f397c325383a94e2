"""A stored run as TensorBoard event files: ``gradientflow runs export RUN --tensorboard DIR``.

The export reads the run's store after (or while) it trains, so it costs the training step nothing.
It writes, with ``torch.utils.tensorboard.SummaryWriter`` (needs ``pip install 'gradientflow[tensorboard]'``):

- every metric as a scalar ``<split>/<name>`` (``train/loss``, ``train/grad_norm``, ``test/accuracy``, ...);
- every per-layer probe statistic as a scalar ``layers/<layer>/<statistic>`` at the window's last step;
- every activation histogram as a TensorBoard histogram ``activations/<layer>`` from the stored bins
  (edges and counts as the probe kept them; the sum and sum of squares that TensorBoard's summary
  wants are taken at the bins' centres, so its mean and std readouts are the binned ones);
- recurrent layers' gradient through time as ``time_grad/<layer>`` histograms over t (one per window).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs TensorBoard: pip install 'gradientflow[tensorboard]'") from None
    return SummaryWriter(log_dir=str(folder))


def _tag(text: str) -> str:
    """A layer name as a TensorBoard tag part: dots and slashes kept, spaces and colons made safe."""
    return text.replace(" ", "_").replace(":", "/")


def export(run, folder: str | os.PathLike) -> dict:
    """Write ``run`` (a ``store.Run``) into ``folder`` as event files; the counts of what was written."""
    folder = Path(folder)
    writer = _writer(folder)
    counts = {"scalars": 0, "histograms": 0}
    try:
        metrics = run.metrics().to_pylist()
        for r in metrics:
            writer.add_scalar(f"{r['split']}/{r['name']}", r["value"], r["step"])
        counts["scalars"] += len(metrics)
        probes = run.table("probes")
        if probes is not None:
            rows = probes.to_pylist()
            for r in rows:
                if r["value"] is not None and np.isfinite(r["value"]):
                    writer.add_scalar(f"layers/{_tag(r['layer'])}/{r['name']}", r["value"], r["step"])
                    counts["scalars"] += 1
        hist = run.table("histograms")
        if hist is not None:
            frame = hist.to_pandas().sort_values(["step", "layer", "bin"])
            for (step, layer), g in frame.groupby(["step", "layer"], sort=False):
                counts["histograms"] += _histogram(writer, f"activations/{_tag(layer)}", g["lo"].to_numpy(),
                                                   g["hi"].to_numpy(), g["count"].to_numpy(), int(step))
        time = run.table("time_gradients")
        if time is not None:
            frame = time.to_pandas().sort_values(["step", "layer", "t"])
            for (step, layer), g in frame.groupby(["step", "layer"], sort=False):
                t = g["t"].to_numpy(dtype=float)
                counts["histograms"] += _histogram(writer, f"time_grad/{_tag(layer)}", t - 0.5, t + 0.5,
                                                   g["norm"].to_numpy(), int(step))
    finally:
        writer.close()
    return {"folder": str(folder), **counts}


def _histogram(writer, tag: str, lo: np.ndarray, hi: np.ndarray, count: np.ndarray, step: int) -> int:
    """One histogram from bins [lo, hi) with ``count`` each; 0 (nothing written) when every count is 0."""
    total = float(count.sum())
    if total <= 0:
        return 0
    centre = (lo + hi) / 2
    writer.add_histogram_raw(tag, min=float(lo[0]), max=float(hi[-1]), num=total, sum=float((centre * count).sum()),
                             sum_squares=float((centre ** 2 * count).sum()), bucket_limits=hi.tolist(),
                             bucket_counts=count.tolist(), global_step=step)
    return 1
