"""``reproduce``: the seeds' claims C1-C21 and the experiments beyond them (X1-X3) as experiments, and
the report (the main job)."""

from __future__ import annotations

import os
import sys

import click

from .app import bad_input, main
from .render import echo_json


@main.command("reproduce")
@click.option("--out", "out", required=True, help="Folder for report.html, claims.json, figures/, data/ and runs/ "
              "(new, empty, or written by an earlier reproduce).")
@click.option("--quick", is_flag=True, help="The small size of every experiment (minutes on a laptop CPU).")
@click.option("--only", default=None, help="Claims to check, comma-separated (C7,C15,X1); default: all of C1-C21 and X1-X3.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: the CPU count, at most the number of experiments).")
@click.option("--resume", is_flag=True, help="Continue a killed reproduce in --out (same --quick and --seed): "
              "experiments whose measurements were stored are checked and kept, the others run.")
@click.option("--json", "as_json", is_flag=True, help="Print the claims' records as JSON.")
def reproduce_cmd(out, quick, only, seed, jobs, resume, as_json) -> None:
    """Run the seeds' claims as experiments and write the report (the main job)."""
    from .. import experiments, report

    with bad_input():
        result = experiments.reproduce(out, only=only, quick=quick, seed=seed, jobs=jobs or os.cpu_count() or 1,
                                       progress=not as_json, resume=resume)
    paths = report.write(out, result["claims"], seed=seed, quick=quick)
    claims = result["claims"]
    if as_json:
        echo_json(claims)
    else:
        for c in claims:
            click.echo(f"{c['id']:>4}  {c['verdict']:<5}  {c['why']}")
        if result["kept"]:
            click.echo(f"kept from the earlier run (measurements checked, verdicts recomputed): {', '.join(result['kept'])}")
        click.echo(f"{report.tally(claims)}; {result['wall_seconds']:.0f} s")
        for p in paths:
            click.echo(str(p))
    if any(c["verdict"] == "error" for c in claims):
        sys.exit(1)
