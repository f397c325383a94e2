"""The command line: the only place that parses arguments and prints.

Every bad input ends as one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from pydantic import ValidationError

EXIT_BAD_INPUT = 2


class BadInput(click.ClickException):
    """A user error: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT


class _OneLineErrors(click.Group):
    """A click group whose errors, click's own parse errors included, are one line on stderr."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.ClickException as err:
            click.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)


def _output_folder(path: str) -> Path:
    """The folder to write into: created if missing, but its parent must exist."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--out {path!r} exists and is not a folder")
    if not folder.exists():
        if not folder.parent.exists():
            raise BadInput(f"--out {path!r}: parent folder {str(folder.parent)!r} does not exist")
        folder.mkdir()
    return folder


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "inf"
    return f"{v:.{digits}g}"


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gradientflow")
def main() -> None:
    """gradientflow: see and measure why a deep network trains or does not."""


@main.command("activations")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@click.option("--cost", is_flag=True, help="Also time each function (ns per element, ratio to ReLU; C6).")
def activations_cmd(as_json: bool, cost: bool) -> None:
    """The measured property table of every activation (nothing typed in by hand)."""
    from . import properties

    rows = [p.to_dict() for p in properties.table()]
    if cost:
        from .cost import cost_table

        for row, timing in zip(rows, cost_table()):
            row.update({k: v for k, v in timing.items() if k != "name"})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    head = f"{'name':<11} {'range':<17} {'E f(z)':>8} {'Var f(z)':>8} {'max|f_|':>8} {'at':>10} " \
           f"{'sat@1':>7} {'mono':>5} {'gain':>7} {'torch':>7}"
    if cost:
        head += f" {'ns/el':>6} {'xReLU':>6}"
    click.echo(head.replace("f_", "f'"))
    for r in rows:
        lo, hi = r["range"]
        rng = f"[{'-inf' if lo is None else _fmt(lo, 3)}, {_fmt(hi, 3)}]"
        a, b = r["max_derivative_at"]
        at = ("all x" if a is None and b is None else
              _fmt(a, 3) if a == b else f"{'-inf' if a is None else _fmt(a, 2)}..{_fmt(b, 2)}")
        line = (f"{r['name']:<11} {rng:<17} {r['mean_at_unit_gaussian']:>8.4f} {r['var_at_unit_gaussian']:>8.4f} "
                f"{r['max_derivative']:>8.4f} {at:>10} {r['saturated_fraction']:>7.4f} "
                f"{'yes' if r['monotonic'] else 'no':>5} {r['gain']:>7.4f} "
                f"{'-' if r['torch_gain'] is None else format(r['torch_gain'], '.4f'):>7}")
        if cost:
            line += f" {r['forward_ns']:>6.2f} {r['forward_vs_relu']:>6.2f}"
        click.echo(line)
    click.echo("E f(z), Var f(z): z ~ N(0,1). sat@1: P(|f'(z)| < 5% of max). gain: g^2 E[f(z)^2] = 1. "
               "torch: nn.init.calculate_gain.")


@main.group("plot")
def plot_group() -> None:
    """Write figures."""


@plot_group.command("activations")
@click.option("--out", "out", required=True, help="Folder for the figures (created; its parent must exist).")
def plot_activations(out: str) -> None:
    """Every activation beside its derivative, as PNG and SVG (the seeds' missing figures)."""
    from . import activations, plots

    folder = _output_folder(out)
    written = plots.save(plots.activation_gallery(activations.NAMES), folder, "activations")
    for name in activations.NAMES:
        written += plots.save(plots.activation_panel(name), folder, f"activation_{name}")
    for path in written:
        click.echo(str(path))


@main.command("propagate")
@click.option("--activation", default="tanh", show_default=True)
@click.option("--init", "init_name", default="xavier", show_default=True)
@click.option("--std", type=float, default=None, help="normal/uniform: std of the weights.")
@click.option("--gain", type=float, default=None, help="xavier/lecun/orthogonal: gain on the std.")
@click.option("--value", type=float, default=None, help="constant: value of every weight.")
@click.option("--depth", type=int, default=10, show_default=True, help="Hidden layers.")
@click.option("--width", type=int, default=500, show_default=True)
@click.option("--batch", type=int, default=1000, show_default=True)
@click.option("--pieces", type=int, default=2, show_default=True, help="maxout: linear pieces per unit.")
@click.option("--no-bias", is_flag=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", "plot_dir", default=None, help="Folder for the per-layer histogram figure.")
def propagate_cmd(activation, init_name, std, gain, value, depth, width, batch, pieces, no_bias, seed, as_json,
                  plot_dir) -> None:
    """Push unit-Gaussian data through a fresh network; per-layer mean, std, saturated and zero shares."""
    from .config import PropagateConfig, describe_error

    try:
        cfg = PropagateConfig(activation=activation, init=init_name, std=std, gain=gain, value=value, depth=depth,
                              width=width, batch=batch, pieces=pieces, bias=not no_bias, seed=seed)
    except ValidationError as err:
        raise BadInput(describe_error(err)) from None
    folder = _output_folder(plot_dir) if plot_dir else None

    import torch

    from . import model
    from .propagate import propagate

    g = torch.Generator().manual_seed(cfg.seed)
    net = model.mlp(cfg.width, cfg.width, cfg.depth, activation=cfg.activation, init_name=cfg.init,
                    scale=cfg.scale(), bias=cfg.bias, pieces=cfg.pieces, generator=g)
    x = torch.randn(cfg.batch, cfg.width, generator=g)
    stats, outputs = propagate(net, x, cfg.activation)
    layers = [s.__dict__ for s in stats]
    if as_json:
        click.echo(json.dumps({"config": cfg.model_dump(), "layers": layers}, indent=2))
    else:
        click.echo(f"{cfg.activation}, init {cfg.init}, {cfg.depth} x {cfg.width}, batch {cfg.batch}, seed {cfg.seed}")
        click.echo(f"{'layer':>5} {'mean':>10} {'std':>10} {'saturated':>10} {'zero':>8}")
        for s in stats:
            sat = "-" if s.saturated is None else f"{s.saturated:.4f}"
            click.echo(f"{s.index:>5} {s.mean:>10.4g} {s.std:>10.4g} {sat:>10} {s.zero:>8.4f}")
    if folder is not None:
        from . import plots

        title = f"{cfg.activation}, init {cfg.init}" + (f" std {cfg.std:g}" if cfg.std is not None else "")
        stem = f"propagate_{cfg.activation}_{cfg.init}" + (f"_std{cfg.std:g}" if cfg.std is not None else "")
        paths = plots.save(plots.layer_histograms(outputs, title), folder, f"{stem}_hist")
        paths += plots.save(plots.layer_moments(stats, title), folder, f"{stem}_moments")
        for p in paths:
            click.echo(str(p), err=as_json)


def run() -> None:
    """Console-script entry point."""
    main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
