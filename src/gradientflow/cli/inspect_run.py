"""``inspect``: findings in words, with numbers, from a run trained with ``--probe``."""

from __future__ import annotations

import click

from .app import BadInput, bad_input, main, open_runs, output_folder
from .render import echo_json


@main.command("inspect")
@click.argument("run")
@click.option("--plot", "plot_dir", help="Folder for the probe figures (histograms, heat maps, timelines, Glorot).")
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(run, plot_dir, as_json) -> None:
    """Findings in words, with numbers, from a run trained with --probe."""
    from ..probes import findings

    (r,) = open_runs([run])
    with bad_input():  # a part of another schema, damaged or linked
        long, layers, time = r.table("probes"), r.table("probe_layers"), r.table("time_gradients")
        stored = r.table("histograms") if plot_dir else None
    if long is None:
        raise BadInput(f"run {run!r} has no probe statistics; train it with --probe")
    rows = findings.from_long(long.to_pylist(), layers.to_pylist() if layers is not None else [],
                              time.to_pylist() if time is not None else [])
    found = findings.analyse(rows)
    figures = []
    if plot_dir:
        from .. import plots

        hists = findings.histograms(stored.to_pylist()) if stored is not None else {}
        figures = [str(p) for p in plots.save_probe_figures(rows, hists, output_folder(plot_dir))]
    if as_json:
        last = max(x["last_step"] for x in rows)
        echo_json({"run": r.name, "step": last, "findings": [f.to_dict() for f in found],
                   "layers": [x for x in rows if x["last_step"] == last], "figures": figures})
        return
    if not found:
        click.echo(f"{r.name}: no findings (every rule within its threshold)")
    for f in found:
        click.echo(f"- {f.message}\n  try: {f.recommendation}")
    for path in figures:
        click.echo(f"figure: {path}")
