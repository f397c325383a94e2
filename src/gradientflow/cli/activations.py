"""``activations`` (the measured property table, C1-C6) and ``plot activations`` (the gallery)."""

from __future__ import annotations

import click

from .app import main, output_folder
from .render import echo_json, fmt, table


def _interval(lo, hi) -> str:
    return f"[{'-inf' if lo is None else fmt(lo, 3)}, {'inf' if hi is None else fmt(hi, 3)}]"


def _where(lo, hi) -> str:
    """Where max|f'| is reached: a point, an interval, or everywhere."""
    if lo is None and hi is None:
        return "all x"
    return fmt(lo, 3) if lo == hi else f"{'-inf' if lo is None else fmt(lo, 2)}..{'inf' if hi is None else fmt(hi, 2)}"


@main.command("activations")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@click.option("--cost", is_flag=True, help="Also time each function (ns per element, ratio to ReLU; C6).")
def activations_cmd(as_json: bool, cost: bool) -> None:
    """The measured property table of every activation (nothing typed in by hand)."""
    from .. import properties

    rows = properties.rows(cost=cost)
    if as_json:
        echo_json(rows)
        return
    shown = [{"name": r["name"], "range": _interval(*r["range"]), "E f(z)": r["mean_at_unit_gaussian"],
              "Var f(z)": r["var_at_unit_gaussian"], "max|f'|": r["max_derivative"],
              "at": _where(*r["max_derivative_at"]), "sat@1": r["saturated_fraction"],
              "mono": "yes" if r["monotonic"] else "no", "gain": r["gain"], "torch": r["torch_gain"],
              "ns/el": r.get("forward_ns"), "xReLU": r.get("forward_vs_relu")} for r in rows]
    columns = list(shown[0])[:-2] + (["ns/el", "xReLU"] if cost else [])
    table(shown, columns)
    click.echo("E f(z), Var f(z): z ~ N(0,1). sat@1: P(|f'(z)| < 5% of max). gain: g^2 E[f(z)^2] = 1. "
               "torch: nn.init.calculate_gain.")


@main.group("plot")
def plot_group() -> None:
    """Write figures."""


@plot_group.command("activations")
@click.option("--out", "out", required=True, help="Folder for the figures (created; its parent must exist).")
def plot_activations(out: str) -> None:
    """Every activation beside its derivative, as PNG and SVG (the seeds' missing figures)."""
    from .. import plots

    for path in plots.save_activation_figures(output_folder(out)):
        click.echo(str(path))
