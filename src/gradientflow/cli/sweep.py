"""``sweep run`` and ``sweep show``: a grid of training runs on a pool of worker processes."""

from __future__ import annotations

import math
import sys

import click

from .app import bad_input, main
from .render import echo_json


@main.group("sweep")
def sweep_group() -> None:
    """Sweeps: many training runs from one spec (a base config, a grid, random draws)."""


@sweep_group.command("run")
@click.argument("spec_file")
@click.option("--out", required=True, help="The sweep's folder: runs/ and results.parquet (new, or the same "
              "sweep's, to continue it).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes, one torch thread each.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True)
def run_cmd(spec_file, out, workers, quiet, as_json) -> None:
    """Train every cell of SPEC_FILE (YAML or TOML); again, to continue a killed sweep."""
    from ..config import load_file
    from ..sweep import SweepSpec, run_sweep

    with bad_input():
        spec = SweepSpec.parse(load_file(spec_file))
        spec.cells()  # every config validated before anything is written
    with bad_input():
        counts = run_sweep(spec, out, workers=workers, progress=not quiet and sys.stderr.isatty())
    if as_json:
        echo_json(counts)
        return
    click.echo(f"{counts['cells']} cells: {counts['finished']} finished, {counts['diverged']} diverged, "
               f"{counts['failed']} failed; results in {counts['results']}")


@sweep_group.command("show")
@click.argument("out")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(out, as_json) -> None:
    """The results of the sweep in OUT, one row per cell."""
    from ..sweep import read_results

    with bad_input():
        rows = read_results(out)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no cells")
        return
    shown = [k for k in rows[0] if k not in ("message", "cell")]
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else ("" if v is None or v != v else str(v))  # noqa: E731
    width = {k: max(len(k), *(len(cell(r[k])) for r in rows)) for k in shown}
    click.echo("  ".join(k.ljust(width[k]) for k in shown))
    for r in rows:
        click.echo("  ".join(cell(r[k]).ljust(width[k]) for k in shown))


@sweep_group.command("plot")
@click.argument("out")
@click.option("--x", "x", required=True, help="A varied field for the columns (e.g. sigma_w2).")
@click.option("--y", "y", required=True, help="A varied field for the rows (e.g. depth).")
@click.option("--value", default="test_accuracy", show_default=True, help="The result to colour the cells by.")
@click.option("--plot", "plot_dir", required=True, help="Folder for the figure (PNG and SVG).")
@click.option("--json", "as_json", is_flag=True)
def plot_cmd(out, x, y, value, plot_dir, as_json) -> None:
    """A heat map of VALUE over two varied fields; with x = sigma_w2 and y = depth (init meanfield),
    mean-field theory's trainable depth 6 xi_c drawn over it (Schoenholz et al. 2017)."""
    import json
    from pathlib import Path

    import numpy as np

    from .. import plots
    from ..config import TrainConfig
    from ..sweep import heat, read_results

    from .app import output_folder

    with bad_input():
        rows = read_results(out)
        grid = heat.heat(rows, x, y, value)
    overlay, label = None, ""
    if (x, y) == ("sigma_w2", "depth"):
        spec = json.loads((Path(out) / "spec.json").read_text())
        base = TrainConfig(**{**spec["base"], **{k: v[0] for k, v in spec["grid"].items()}})
        if base.init == "meanfield" and "activation" not in spec["grid"] and "sigma_b2" not in spec["grid"]:
            w = np.linspace(min(grid["x"]), max(grid["x"]), 200)
            sigma_b2 = base.sigma_b2 or 0.0
            overlay = (w, heat.trainable_depth(base.activation, w, sigma_b2))
            label = f"6 xi_c ({base.activation}, sigma_b2 = {sigma_b2:g})"
    fig = plots.sweep_heatmap(grid, x, y, value, overlay, label)
    paths = plots.save(fig, output_folder(plot_dir), f"sweep_{value}_{x}_{y}")
    if as_json:
        echo_json({"x": grid["x"], "y": grid["y"], "value": grid["value"].tolist(), "cells": grid["cells"].tolist(),
                   "theory": None if overlay is None else {"sigma_w2": overlay[0].tolist(), "depth": overlay[1].tolist()},
                   "figures": [str(p) for p in paths]})
        return
    for path in paths:
        click.echo(f"figure: {path}")
