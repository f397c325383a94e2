"""``sweep run``, ``sweep show`` and ``sweep plot``: a grid of training runs on a local process pool
or a Ray cluster, its results table and its heat maps.

``sweep run`` refuses, in one line with exit code 2 and before writing anything, an ``--out`` that
is not new, empty or the same spec's sweep; a cell whose worker is lost is a failed row, not a
traceback, and the summary counts it."""

from __future__ import annotations

import sys

import click

from .app import bad_input, main
from .render import echo_json, table


@main.group("sweep")
def sweep_group() -> None:
    """Sweeps: many training runs from one spec (a base config, a grid, random draws)."""


@sweep_group.command("run")
@click.argument("spec_file")
@click.option("--out", required=True, help="The sweep's folder: runs/ and results.parquet (new or empty, or the "
              "same spec's sweep, to continue it; anything else is refused).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: a Ray cluster (started here, or --address).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Cells trained at once, one torch thread each [local: 1; ray: every CPU of the cluster].")
@click.option("--address", default=None, help="ray: a running cluster's head (HOST:PORT, ray://HOST:PORT or auto); "
              "without it a local Ray is started for the sweep.")
@click.option("--batched", is_flag=True, help="Train same-shaped MLPs together in this process (torch.func.vmap): "
              "sgd, momentum or nesterov, a constant rate, no clipping or probes.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True)
def run_cmd(spec_file, out, engine, workers, address, batched, quiet, as_json) -> None:
    """Train every cell of SPEC_FILE (YAML or TOML); again, to continue a killed sweep."""
    from ..config import load_file
    from ..sweep import SweepSpec, run_sweep

    # run_sweep validates every cell, checks that --out is new, empty or this spec's sweep, and reaches
    # the engine before it writes anything; each refusal is one line, exit code 2
    with bad_input():
        counts = run_sweep(SweepSpec.parse(load_file(spec_file)), out, engine=engine, workers=workers,
                           address=address, batched=batched, progress=not quiet and sys.stderr.isatty())
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
    table(rows, [k for k in rows[0] if k not in ("message", "cell")])


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
    from .. import plots
    from ..sweep import heat, read_results
    from .app import output_folder

    with bad_input():
        rows = read_results(out)
        grid = heat.heat(rows, x, y, value)
        theory = heat.theory_overlay(out, grid, x, y)
    overlay = theory[:2] if theory is not None else None
    fig = plots.sweep_heatmap(grid, x, y, value, [(*theory, {"color": "red", "lw": 2})] if theory else ())
    paths = plots.save(fig, output_folder(plot_dir), f"sweep_{value}_{x}_{y}")
    if as_json:
        echo_json({"x": grid["x"], "y": grid["y"], "value": grid["value"].tolist(), "cells": grid["cells"].tolist(),
                   "theory": None if overlay is None else {"sigma_w2": overlay[0].tolist(), "depth": overlay[1].tolist()},
                   "figures": [str(p) for p in paths]})
        return
    for path in paths:
        click.echo(f"figure: {path}")
