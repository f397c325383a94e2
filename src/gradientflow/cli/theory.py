"""``theory``, ``theory critical``, ``theory phase``: mean-field predictions (Poole 2016, Schoenholz 2017)."""

from __future__ import annotations

import click

from .. import jsontext
from .app import bad_input, main, output_folder
from .render import echo_json, fmt


@main.group("theory", invoke_without_command=True)
@click.option("--activation", default="tanh", show_default=True)
@click.option("--sigma-w2", type=float, default=1.0, show_default=True, help="Weight variance times fan_in.")
@click.option("--sigma-b2", type=float, default=0.0, show_default=True, help="Bias variance.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def theory_group(ctx, activation, sigma_w2, sigma_b2, as_json) -> None:
    """Mean-field predictions at one point: q*, chi_1, c*, depth scales, phase (Poole 2016, Schoenholz 2017)."""
    if ctx.invoked_subcommand is not None:
        return
    from .. import theory
    from ..config import TheoryPoint

    with bad_input():
        cfg = TheoryPoint(activation=activation, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
        row = theory.analyse(cfg.activation, cfg.sigma_w2, cfg.sigma_b2).__dict__
    if as_json:
        echo_json(row)  # NaN as null, infinity as "inf" (a depth scale at the critical point)
        return
    for key, value in row.items():
        click.echo(f"{key:<20} {fmt(value, 6) if isinstance(value, float) else value}")


@theory_group.command("critical")
@click.option("--activation", default="tanh", show_default=True)
@click.option("--sigma-b2", type=float, default=0.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def theory_critical(activation, sigma_b2, as_json) -> None:
    """The critical sigma_w2 (chi_1 = 1) at the given sigma_b2: the edge-of-chaos initialisation."""
    from .. import theory
    from ..config import TheoryPoint

    with bad_input():
        cfg = TheoryPoint(activation=activation, sigma_b2=sigma_b2)
        w = float(theory.critical_sigma_w2(cfg.activation, cfg.sigma_b2))
    if as_json:
        click.echo(jsontext.dumps({"activation": cfg.activation, "sigma_b2": cfg.sigma_b2, "sigma_w2": w}))
    else:
        click.echo(f"{cfg.activation}: critical sigma_w2 = {w:.6g} at sigma_b2 = {cfg.sigma_b2:g}")


@theory_group.command("phase")
@click.option("--activation", default="tanh", show_default=True)
@click.option("--out", "out", required=True, help="Folder for the figure (created; its parent must exist).")
@click.option("--resolution", type=int, default=100, show_default=True, help="Grid points per axis (4-400).")
@click.option("--sigma-w2-max", type=float, default=4.0, show_default=True)
@click.option("--sigma-b2-max", type=float, default=0.5, show_default=True)
def theory_phase(activation, out, resolution, sigma_w2_max, sigma_b2_max) -> None:
    """The phase diagram over sigma_w2 x sigma_b2, coloured by xi_c, with the critical line."""
    from .. import plots, theory
    from ..config import PhaseSpec

    with bad_input():
        cfg = PhaseSpec(activation=activation, resolution=resolution, sigma_w2_max=sigma_w2_max,
                        sigma_b2_max=sigma_b2_max)
    folder = output_folder(out)
    grid = theory.phase_diagram(cfg.activation, cfg.sigma_w2_max, cfg.sigma_b2_max, cfg.resolution)
    fig = plots.phase_diagram(grid, grid["critical"], f"{cfg.activation}: depth scale xi_c and the critical line")
    for path in plots.save(fig, folder, f"phase_{cfg.activation}"):
        click.echo(str(path))
