"""``propagate``: unit-Gaussian data through a fresh network, layer by layer, beside the theory (C15-C17)."""

from __future__ import annotations

import click

from .app import bad_input, main, output_folder
from .render import echo_json, table


@main.command("propagate")
@click.option("--activation", default="tanh", show_default=True)
@click.option("--init", "init_name", default="xavier", show_default=True)
@click.option("--std", type=float, default=None, help="normal/uniform: std of the weights.")
@click.option("--gain", type=float, default=None, help="xavier/lecun/orthogonal: gain on the std.")
@click.option("--value", type=float, default=None, help="constant: value of every weight.")
@click.option("--sigma-w2", type=float, default=None, help="meanfield: W ~ N(0, sigma_w2 / fan_in) (1).")
@click.option("--sigma-b2", type=float, default=None, help="meanfield: b ~ N(0, sigma_b2) (0).")
@click.option("--depth", type=int, default=10, show_default=True, help="Hidden layers.")
@click.option("--width", type=int, default=500, show_default=True)
@click.option("--batch", type=int, default=1000, show_default=True)
@click.option("--pieces", type=int, default=2, show_default=True, help="maxout: linear pieces per unit.")
@click.option("--no-bias", is_flag=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", "plot_dir", default=None, help="Folder for the per-layer histogram figure.")
@click.option("--max-memory", default=None, help="Refuse a study whose estimated memory exceeds this (512M, 8G; "
              "default: this machine's memory).")
def propagate_cmd(activation, init_name, std, gain, value, sigma_w2, sigma_b2, depth, width, batch, pieces, no_bias,
                  seed, as_json, plot_dir, max_memory) -> None:
    """Push unit-Gaussian data through a fresh network; per-layer mean, std, saturated and zero shares."""
    from .. import memory
    from ..config import PropagateConfig
    from ..propagate import study

    with bad_input():
        cfg = PropagateConfig(activation=activation, init=init_name, std=std, gain=gain, value=value, sigma_w2=sigma_w2,
                              sigma_b2=sigma_b2, depth=depth,
                              width=width, batch=batch, pieces=pieces, bias=not no_bias, seed=seed)
    with bad_input():  # a study too large for the memory is refused (by study) before the folder is made
        limit = memory.parse(max_memory) if max_memory is not None else None
        result = study(cfg.activation, cfg.init, depth=cfg.depth, width=cfg.width, batch=cfg.batch, scale=cfg.scale(),
                       pieces=cfg.pieces, bias=cfg.bias, seed=cfg.seed, max_memory=limit)
    folder = output_folder(plot_dir) if plot_dir else None
    layers = result.layers()
    if as_json:
        echo_json({"config": cfg.model_dump(), "layers": layers})
    else:
        click.echo(f"{cfg.activation}, init {cfg.init}, {cfg.depth} x {cfg.width}, batch {cfg.batch}, seed {cfg.seed}")
        table([{"layer": r["index"], "mean": r["mean"], "std": r["std"], "theory std": r["predicted_std"],
                "saturated": r["saturated"], "zero": r["zero"]} for r in layers],
              ["layer", "mean", "std", "theory std", "saturated", "zero"])
    if folder is not None:
        from .. import plots

        for path in plots.save_propagation(result, cfg.activation, cfg.init, cfg.std, cfg.seed, folder):
            click.echo(str(path), err=as_json)
