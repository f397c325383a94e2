"""Figures: results in, matplotlib ``Figure`` out (pyplot is never used). No training here; ``save`` writes PNG and SVG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from . import activations, properties


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """A new ``Figure`` and its axes, like ``pyplot.subplots`` but without pyplot: no global figure
    registry and no backend chosen, so a user's notebook or GUI backend is left alone."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def ramp(i: int, n: int):
    """The ``i``-th of ``n`` colours on an ordered, colour-blind-safe ramp (viridis, short of its pale end)."""
    import matplotlib

    return matplotlib.colormaps["viridis"](0.85 * i / max(1, n - 1))


def literal(name) -> str:
    """A name from the user (a run folder, a layer path) as figure text: "$" escaped, so that it is
    drawn as typed and cannot start a mathtext formula that breaks or restyles the figure."""
    return str(name).replace("$", r"\$")


def save(fig: Figure, folder: Path, stem: str, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.svg`` (or ``formats``) into ``folder``; return the paths."""
    paths = [folder / f"{stem}.{fmt}" for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return paths


def _shade_saturation(ax, region, xlim) -> None:
    for lo, hi in region:
        ax.axvspan(xlim[0] if lo is None else lo, xlim[1] if hi is None else hi, color="0.9", lw=0)


def phase_diagram(grid: dict, critical: tuple[np.ndarray, np.ndarray] | None, title: str) -> Figure:
    """xi_c over sigma_w2 x sigma_b2 (log colour), with the critical line chi_1 = 1 (Schoenholz et al. 2017, fig. 1)."""
    from matplotlib.colors import LogNorm

    fig, ax = subplots(figsize=(6, 4.2))
    xi = np.clip(grid["xi_c"], 1e-2, 1e3)  # inf (the critical line, unbounded q*) shows as the top colour
    positive = xi[np.isfinite(xi) & (xi > 0)]
    norm = LogNorm(vmin=max(positive.min(), 1e-2), vmax=1e3) if positive.size else None
    mesh = ax.pcolormesh(grid["sigma_w2"], grid["sigma_b2"], xi, norm=norm, shading="auto", cmap="viridis",
                         rasterized=True)  # one image in the SVG, not 40 000 cells
    fig.colorbar(mesh, ax=ax, label="depth scale xi_c (layers; 1e3 = at least, inf included)")
    if critical is not None:
        ax.plot(*critical, color="white", lw=2, label="critical line chi_1 = 1")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("sigma_w^2")
    ax.set_ylabel("sigma_b^2")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def activation_panel(name: str, xlim: tuple[float, float] = (-6.0, 6.0)) -> Figure:
    """One activation: f and f' side by side, saturated region shaded (C1, C5, C7-C9)."""
    fig, (left, right) = subplots(1, 2, figsize=(8, 3))
    _draw_activation(left, right, name, xlim)
    fig.tight_layout()
    return fig


def _maxout_example(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1-D maxout unit with pieces x and -0.5x + 1 (an example; pieces are learned)."""
    x = x.clone().requires_grad_(True)
    y = torch.maximum(x, -0.5 * x + 1.0)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy


def _draw_activation(left, right, name: str, xlim) -> None:
    x = torch.linspace(*xlim, 1201, dtype=torch.float64)
    if name == "maxout":
        y, dy = _maxout_example(x)
        label = "max(x, 1 - x/2)"
    else:
        act = activations.get(name)
        y, dy = act(x), act.derivative(x)
        label = act.formula
        _shade_saturation(right, properties.measure(name).saturated_region, xlim)
    left.plot(x, y, color="C0")
    right.plot(x, dy, color="C3")
    left.set_title(f"{name}: {label}", fontsize=9)
    right.set_title(f"{name}'  (grey: |f'| < 5% of max)", fontsize=9)
    for ax in (left, right):
        ax.axhline(0, color="0.6", lw=0.5)
        ax.axvline(0, color="0.6", lw=0.5)
        ax.set_xlim(*xlim)


def activation_gallery(names: Sequence[str], xlim: tuple[float, float] = (-6.0, 6.0)) -> Figure:
    """Every activation in ``names`` beside its derivative, two rows of panels per column pair."""
    cols = 2  # two (f, f') pairs per row
    rows = math.ceil(len(names) / cols)
    fig, axes = subplots(rows, 2 * cols, figsize=(14, 2.4 * rows), squeeze=False)
    for k, name in enumerate(names):
        r, c = divmod(k, cols)
        _draw_activation(axes[r, 2 * c], axes[r, 2 * c + 1], name, xlim)
    for k in range(len(names), rows * cols):
        r, c = divmod(k, cols)
        axes[r, 2 * c].axis("off")
        axes[r, 2 * c + 1].axis("off")
    fig.tight_layout()
    return fig


def save_activation_figures(folder: Path) -> list[Path]:
    """The gallery of every activation and one panel per activation, written into ``folder``."""
    written = save(activation_gallery(activations.NAMES), folder, "activations")
    for name in activations.NAMES:
        written += save(activation_panel(name), folder, f"activation_{name}")
    return written


def layer_histograms(outputs: Sequence[torch.Tensor], title: str, bins: int = 60,
                     predicted: Sequence[np.ndarray] | None = None) -> Figure:
    """One panel per hidden layer, shared axes: the distribution of its outputs (C15-C17, CS231n).

    ``predicted``, when given, holds samples of the theory's distribution of each
    layer's output, drawn as a red step line over the measured histogram.
    """
    lo = min(float(h.min()) for h in outputs)
    hi = max(float(h.max()) for h in outputs)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    fig, axes = subplots(1, len(outputs), figsize=(1.6 * len(outputs) + 1, 2.6), sharex=True, sharey=True,
                             squeeze=False)
    for k, (ax, h) in enumerate(zip(axes[0], outputs)):
        ax.hist(h.detach().flatten().double().numpy(), bins=edges, density=True, color="C0", label="measured")
        if predicted is not None:
            ax.hist(np.clip(predicted[k], lo, hi), bins=edges, density=True, histtype="step", color="C3", lw=1,
                    label="mean-field theory")
        ax.set_title(f"layer {k + 1}", fontsize=8)
        ax.tick_params(labelsize=7)
    if predicted is not None:
        axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def layer_moments(stats: Sequence, title: str, predicted=None) -> Figure:
    """Mean and std of each hidden layer's output against depth (the CS231n line plots).

    ``predicted``: the theory's ``LayerPrediction`` list, drawn as dashed lines.
    """
    idx = [s.index for s in stats]
    fig, (left, right) = subplots(1, 2, figsize=(8, 3))
    left.plot(idx, [s.mean for s in stats], "o-", label="measured")
    left.set_title("mean of layer output", fontsize=9)
    right.plot(idx, [s.std for s in stats], "o-", color="C0", label="measured")
    if predicted is not None:
        left.plot(idx, [p.mean for p in predicted], "--", color="C3", label="theory")
        right.plot(idx, [p.std for p in predicted], "--", color="C3", label="theory")
        right.legend(fontsize=7)
    right.set_title("std of layer output", fontsize=9)
    if all(s.std > 0 for s in stats):
        right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("hidden layer")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_propagation(result, activation: str, init_name: str, std: float | None, seed: int,
                     folder: Path) -> list[Path]:
    """A ``propagate.Study``'s per-layer histograms (with the theory's distribution where it applies)
    and moments, as ``propagate_<activation>_<init>[_std<s>]_{hist,moments}``."""
    predicted = result.predicted
    samples = None
    if predicted is not None:  # the theory's distribution of each layer's output: phi(sqrt(q_l) z)
        z = np.random.default_rng(seed).standard_normal(200_000)
        samples = [activations.get(activation).numpy(np.sqrt(p.q) * z) for p in predicted]
    title = f"{activation}, init {init_name}" + (f" std {std:g}" if std is not None else "")
    stem = f"propagate_{activation}_{init_name}" + (f"_std{std:g}" if std is not None else "")
    paths = save(layer_histograms(result.outputs, title, predicted=samples), folder, f"{stem}_hist")
    return paths + save(layer_moments(result.stats, title, predicted=predicted), folder, f"{stem}_moments")


def run_curves(runs: list) -> Figure:
    """Training loss per step (light) with its moving average, and the test score per epoch (accuracy, or R²
    for a regression run), one colour per run."""
    fig, (ax_loss, ax_score) = subplots(1, 2, figsize=(11, 4))
    kinds = set()
    for k, run in enumerate(runs):
        colour = f"C{k % 10}"
        steps, loss = run.series("loss", "train")
        if steps:
            ax_loss.plot(steps, loss, color=colour, alpha=0.25, lw=0.6)
            window = max(1, len(loss) // 50)
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax_loss.plot(steps[window - 1:], smooth, color=colour, lw=1.5, label=literal(run.name))
        e_steps, score = run.series("r2", "test")
        kind = "R²" if e_steps else "accuracy"
        if not e_steps:
            e_steps, score = run.series("accuracy", "test")
        kinds.add(kind)
        ax_score.plot(e_steps, score, "o-", color=colour, ms=3, label=f"{literal(run.name)} ({kind})")
    loss_name = {"accuracy": "cross-entropy", "R²": "squared error"}
    ax_loss.set(xlabel="step", ylabel="training loss (" + " or ".join(loss_name[k] for k in sorted(kinds)) + ")",
                yscale="log", title="training loss")
    score_name = "test " + " or ".join(sorted(kinds))
    ax_score.set(xlabel="step", ylabel=score_name, title=f"{score_name} (end of each epoch)")
    ax_loss.legend(fontsize=8)
    if len(kinds) > 1:
        ax_score.legend(fontsize=8)
    ax_score.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _layer_order(rows: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r["layer"] not in seen:
            seen.append(r["layer"])
    return seen


def probe_histograms(hists: dict, title: str = "") -> Figure:
    """The per-layer histogram grid of the last window (C15). ``hists``: {(step, layer): (lo, hi, counts)}."""
    step = max(s for s, _ in hists)
    layers = [layer for s, layer in hists if s == step]
    cols = min(5, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        lo, hi, counts = hists[(step, layer)]
        counts = np.asarray(counts, dtype=float)
        edges = np.linspace(lo, hi, len(counts) + 1)
        ax.stairs(counts / max(counts.sum(), 1), edges, fill=True, alpha=0.7)
        ax.set_title(f"layer {literal(layer)}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle(title or f"activation histograms, window ending at step {step}", fontsize=10)
    fig.tight_layout()
    return fig


def probe_heatmaps(hists: dict) -> Figure:
    """Each layer's activation histogram over time: x = window, y = activation value, colour = share
    of the values (log scale, 1e-4 to 1)."""
    layers = _layer_order([{"layer": layer} for _, layer in sorted(hists, key=lambda k: k[0])])
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        steps = sorted(s for s, name in hists if name == layer)
        lo, hi, _ = hists[(steps[-1], layer)]
        grid = np.stack([np.asarray(hists[(s, layer)][2], float) / max(sum(hists[(s, layer)][2]), 1) for s in steps], 1)
        ax.imshow(np.clip(grid, 1e-4, 1), origin="lower", aspect="auto", cmap="viridis",
                  norm=matplotlib.colors.LogNorm(1e-4, 1),  # log: a ReLU's spike at 0 would hide the rest
                  extent=(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, lo, hi))
        ax.set_title(f"layer {literal(layer)}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.supxlabel("step", fontsize=9)
    fig.supylabel("activation value", fontsize=9)
    fig.tight_layout()
    return fig


def probe_timelines(rows: list[dict]) -> Figure:
    """Per layer over time: norm of dL/d(output), weight-gradient norm, dead fraction, update ratio."""
    panels = [("act_grad_norm", "‖∂L/∂h‖ (RMS over steps)", "log"), ("weight_grad_norm", "‖∂L/∂W‖", "log"),
              ("dead", "dead units (share)", "linear"), ("update_ratio", "‖ΔW‖ / ‖W‖ per step", "log")]
    fig, axes = subplots(1, 4, figsize=(16, 3.6))
    layers = _layer_order(rows)
    cmap = matplotlib.colormaps["viridis"]
    for ax, (col, label, scale) in zip(axes, panels):
        for k, layer in enumerate(layers):
            pts = sorted((r["last_step"], r.get(col, math.nan)) for r in rows if r["layer"] == layer)
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "o-", ms=2, color=cmap(k / max(1, len(layers) - 1)), label=f"layer {literal(layer)}")
        ax.set(xlabel="step", title=label, yscale=scale)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def glorot_ratios(rows: list[dict]) -> Figure:
    """Glorot & Bengio's forward Var(z)/Var(x) and backward Var(dL/dx)/Var(dL/dz) per layer (C18)."""
    step = max(r["last_step"] for r in rows)
    last = [r for r in rows if r["last_step"] == step]
    names = [r["layer"] for r in last]
    xs = np.arange(len(last))
    fig, ax = subplots(figsize=(max(5, 0.6 * len(last) + 2), 3.6))
    ax.bar(xs - 0.2, [r.get("glorot_forward", math.nan) for r in last], 0.4, label="forward Var(z)/Var(x)")
    ax.bar(xs + 0.2, [r.get("glorot_backward", math.nan) for r in last], 0.4, label="backward Var(∂L/∂x)/Var(∂L/∂z)")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set(xticks=xs, xticklabels=[literal(n) for n in names], xlabel="layer", ylabel="ratio", yscale="log",
           title=f"Glorot ratios (1 = variance kept), window ending at step {step}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def time_gradients(rows: list[dict]) -> Figure | None:
    """Recurrent layers, last window: ||dL_T/dh_t|| against the time step t, the gradient entering
    at the last step as it reaches each earlier one (log scale; a straight fall is C2 along time).
    None when no row has them."""
    step = max(r["last_step"] for r in rows)
    last = [r for r in rows if r["last_step"] == step and isinstance(r.get("time_grad"), list)]
    if not last:
        return None
    fig, ax = subplots(figsize=(6.4, 3.8))
    for r in last:
        ts = np.arange(1, len(r["time_grad"]) + 1)
        ax.plot(ts, np.maximum(r["time_grad"], 1e-300), "o-", ms=2, label=literal(r["layer"]))
    ax.set(xlabel="time step t (processing order)", ylabel="‖∂L_T/∂h_t‖", yscale="log",
           title=f"gradient through time, window ending at step {step}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def probe_figures(rows: list[dict], hists: dict) -> list[tuple[str, Figure]]:
    """(stem, figure) for the probe figures these rows can draw: histograms, heat maps, timelines
    and Glorot ratios from the rows with histograms; the gradient through time where there is one."""
    drawn = [r for r in rows if r.get("hist") is not None or (r["last_step"], r["layer"]) in hists]
    figures = []
    if hists and drawn:
        figures += [("probe_histograms", probe_histograms(hists)), ("probe_heatmaps", probe_heatmaps(hists)),
                    ("probe_timelines", probe_timelines(drawn)), ("glorot_ratios", glorot_ratios(drawn))]
    through_time = time_gradients(rows) if rows else None
    if through_time is not None:
        figures.append(("time_gradients", through_time))
    return figures


def save_probe_figures(rows: list[dict], hists: dict, folder: Path) -> list[Path]:
    """The probe figures of a run (``probe_figures``), one PNG each."""
    return [save(fig, folder, stem)[0] for stem, fig in probe_figures(rows, hists)]


def sweep_heatmap(grid: dict, x: str, y: str, value: str, overlays=(), title: str = "") -> Figure:
    """A sweep's mean ``value`` per (x, y) cell (``sweep.heat``), each cell annotated, grey where no
    run finished. ``overlays`` are (x values, y values, label, matplotlib style) drawn over it with
    each axis mapped onto the cells piecewise-linearly (the cells are evenly spaced whatever the
    values' spacing); non-finite y values are left out."""
    xs, ys, values = grid["x"], grid["y"], np.asarray(grid["value"], dtype=float)
    fig, ax = subplots(figsize=(max(5.0, 0.9 * len(xs) + 2.5), max(3.6, 0.5 * len(ys) + 1.8)))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#cccccc")  # no run finished: grey
    mesh = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap=cmap)
    fig.colorbar(mesh, ax=ax, label=f"{value} (mean over the cells' seeds)")
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2g}", ha="center", va="center", fontsize=7, color="white")
    tick = lambda v: f"{v:g}" if isinstance(v, (int, float)) else literal(v)  # noqa: E731
    ax.set(xticks=range(len(xs)), xticklabels=[tick(v) for v in xs], yticks=range(len(ys)),
           yticklabels=[tick(v) for v in ys], xlabel=x, ylabel=y)
    if overlays and len(xs) > 1 and len(ys) > 1:
        for ox, oy, label, style in overlays:
            ox, oy = np.asarray(ox, dtype=float), np.asarray(oy, dtype=float)
            keep = np.isfinite(oy)
            ax.plot(np.interp(ox[keep], xs, range(len(xs))), np.interp(oy[keep], ys, range(len(ys)), left=-0.5,
                    right=len(ys) - 0.5), label=label, **style)
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or f"{value} over {x} x {y}", fontsize=10)
    fig.tight_layout()
    return fig
