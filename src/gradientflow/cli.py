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
    """The folder to write into: created if missing, but its parent must exist (``store.output_folder``)."""
    from .store import output_folder

    try:
        return output_folder(path)
    except ValueError as err:
        raise BadInput(str(err)) from None


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
    predicted = _predictions(cfg)
    layers = [s.__dict__ | _predicted_fields(predicted, k) for k, s in enumerate(stats)]
    if as_json:
        click.echo(json.dumps({"config": cfg.model_dump(), "layers": layers}, indent=2))
    else:
        click.echo(f"{cfg.activation}, init {cfg.init}, {cfg.depth} x {cfg.width}, batch {cfg.batch}, seed {cfg.seed}")
        click.echo(f"{'layer':>5} {'mean':>10} {'std':>10} {'theory std':>10} {'saturated':>10} {'zero':>8}")
        for row in layers:
            sat = "-" if row["saturated"] is None else f"{row['saturated']:.4f}"
            theory_std = "-" if row["predicted_std"] is None else f"{row['predicted_std']:.4g}"
            click.echo(f"{row['index']:>5} {row['mean']:>10.4g} {row['std']:>10.4g} {theory_std:>10} {sat:>10} "
                       f"{row['zero']:>8.4f}")
    if folder is not None:
        import numpy as np

        from . import activations, plots

        samples = None
        if predicted is not None:  # the theory's distribution of each layer's output: phi(sqrt(q_l) z)
            z = np.random.default_rng(cfg.seed).standard_normal(200_000)
            act = activations.get(cfg.activation)
            samples = [act.numpy(np.sqrt(p.q) * z) for p in predicted]
        title = f"{cfg.activation}, init {cfg.init}" + (f" std {cfg.std:g}" if cfg.std is not None else "")
        stem = f"propagate_{cfg.activation}_{cfg.init}" + (f"_std{cfg.std:g}" if cfg.std is not None else "")
        paths = plots.save(plots.layer_histograms(outputs, title, predicted=samples), folder, f"{stem}_hist")
        paths += plots.save(plots.layer_moments(stats, title, predicted=predicted), folder, f"{stem}_moments")
        for p in paths:
            click.echo(str(p), err=as_json)


def _predictions(cfg):
    """Mean-field predictions for the configured network, or None where the theory does not apply.

    sigma_w2 = fan_in Var(w) of the chosen initialiser (square layers), sigma_b2 = 0
    (biases start at 0). Maxout is not elementwise and LSUV is data-driven: no prediction.
    """
    if cfg.activation == "maxout" or cfg.init == "lsuv":
        return None
    from . import init, theory

    if cfg.init in ("zeros", "constant"):
        return None  # every weight equal: the mean-field average over random weights does not describe it
    sigma_w2 = cfg.width * init.get(cfg.init).variance(cfg.width, cfg.width, cfg.scale())
    return theory.predict_layers(cfg.activation, cfg.depth, sigma_w2, 0.0, input_var=1.0)


def _predicted_fields(predicted, k: int) -> dict:
    if predicted is None:
        return {"predicted_mean": None, "predicted_std": None}
    return {"predicted_mean": predicted[k].mean, "predicted_std": predicted[k].std}


def _theory_errors(fn):
    """Run fn, turning the theory's ValueErrors (no critical point, bad scale) into one-line errors."""
    try:
        return fn()
    except ValueError as err:
        raise BadInput(str(err)) from None


def _check_scales(activation: str, **scales: float) -> None:
    from . import activations

    if activation not in activations.CATALOG:
        why = " (maxout is not elementwise: mean-field theory here covers elementwise activations)" \
            if activation == "maxout" else ""
        raise BadInput(f"unknown activation {activation!r}; expected one of: {', '.join(activations.CATALOG)}{why}")
    for name, value in scales.items():
        if value is None:
            continue
        if not (value == value) or value in (float("inf"), float("-inf")) or value < 0 or value > 1e6:
            raise BadInput(f"invalid {name.replace('_', '-')}={value!r}: must be a finite number in [0, 1e6]")


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
    _check_scales(activation, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    if sigma_w2 == 0:
        raise BadInput("invalid sigma-w2=0.0: must be > 0")
    from . import theory

    point = _theory_errors(lambda: theory.analyse(activation, sigma_w2, sigma_b2))
    row = point.__dict__
    if as_json:
        click.echo(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()},
                              indent=2).replace("Infinity", '"inf"'))
        return
    for key, value in row.items():
        click.echo(f"{key:<20} {_fmt(value, 6) if isinstance(value, float) else value}")


@theory_group.command("critical")
@click.option("--activation", default="tanh", show_default=True)
@click.option("--sigma-b2", type=float, default=0.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def theory_critical(activation, sigma_b2, as_json) -> None:
    """The critical sigma_w2 (chi_1 = 1) at the given sigma_b2: the edge-of-chaos initialisation."""
    _check_scales(activation, sigma_b2=sigma_b2)
    from . import theory

    w = _theory_errors(lambda: float(theory.critical_sigma_w2(activation, sigma_b2)))
    if as_json:
        click.echo(json.dumps({"activation": activation, "sigma_b2": sigma_b2, "sigma_w2": w}))
    else:
        click.echo(f"{activation}: critical sigma_w2 = {w:.6g} at sigma_b2 = {sigma_b2:g}")


@theory_group.command("phase")
@click.option("--activation", default="tanh", show_default=True)
@click.option("--out", "out", required=True, help="Folder for the figure (created; its parent must exist).")
@click.option("--resolution", type=click.IntRange(4, 400), default=100, show_default=True)
@click.option("--sigma-w2-max", type=float, default=4.0, show_default=True)
@click.option("--sigma-b2-max", type=float, default=0.5, show_default=True)
def theory_phase(activation, out, resolution, sigma_w2_max, sigma_b2_max) -> None:
    """The phase diagram over sigma_w2 x sigma_b2, coloured by xi_c, with the critical line."""
    _check_scales(activation, sigma_w2_max=sigma_w2_max, sigma_b2_max=sigma_b2_max)
    if sigma_w2_max == 0 or sigma_b2_max == 0:
        raise BadInput("invalid range: --sigma-w2-max and --sigma-b2-max must be > 0")
    folder = _output_folder(out)
    import numpy as np

    from . import plots, theory

    w = np.linspace(sigma_w2_max / resolution, sigma_w2_max, resolution)
    b = np.linspace(0.0, sigma_b2_max, resolution)
    grid = theory.phase_grid(activation, w, b)
    try:
        line = (theory.critical_sigma_w2(activation, b), b)
    except theory.NoCriticalPoint:
        line = None  # e.g. ReLU: only sigma_b2 = 0 has one; the figure shows the phases without the line
    fig = plots.phase_diagram(grid, line, f"{activation}: depth scale xi_c and the critical line")
    for p in plots.save(fig, folder, f"phase_{activation}"):
        click.echo(str(p))


# --- training -------------------------------------------------------------------------------

@main.command("train")
@click.option("--data", help="mnist1d (default), digits, circle, xor, gaussians, spiral, mixture, idx:DIR, npz:FILE.")
@click.option("--n-train", type=int, help="Training samples (default: the dataset's usual size).")
@click.option("--n-test", type=int, help="Test samples.")
@click.option("--noise", type=float, help="Noise of generated sets (0.1).")
@click.option("--data-seed", type=int, help="Seed of generated data (default: the dataset's standard one).")
@click.option("--normalize", help="none, center, standardize (default; fitted on train), shift (all inputs >= 0).")
@click.option("--depth", type=int, help="Hidden layers; 0 = logistic regression (2).")
@click.option("--width", type=int, help="Units per hidden layer (100).")
@click.option("--activation", help="Hidden activation (relu).")
@click.option("--init", help="Initialiser (he).")
@click.option("--std", type=float, help="normal/uniform: weight std.")
@click.option("--gain", type=float, help="xavier/lecun/orthogonal: gain on the std.")
@click.option("--optimizer", help="sgd, momentum, nesterov, adagrad, rmsprop, adam (default), adamw.")
@click.option("--lr", type=float, help="Learning rate alpha (1e-3).")
@click.option("--momentum", type=float, help="mu: momentum, or Adam's beta1 (0.9).")
@click.option("--rho", type=float, help="rho: RMSProp's decay, Adam's beta2.")
@click.option("--eps", type=float, help="delta under the square root (adagrad, rmsprop, adam, adamw).")
@click.option("--weight-decay", type=float, help="L2 weight decay (0).")
@click.option("--clip-norm", type=float, help="Clip the total gradient norm to this.")
@click.option("--clip-value", type=float, help="Clip every gradient entry to [-v, v].")
@click.option("--schedule", help="constant (default), step, exponential, cosine, warmup.")
@click.option("--step-size", type=int, help="step schedule: steps between decays (a third of the run).")
@click.option("--gamma", type=float, help="step/exponential schedule: decay factor.")
@click.option("--warmup-steps", type=int, help="Linear warm-up steps in front of any schedule.")
@click.option("--epochs", type=int, help="Epochs (20).")
@click.option("--batch-size", type=int, help="Mini-batch size (128).")
@click.option("--seed", type=int, help="Seed of the weights and the shuffling (0).")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints (default: every epoch).")
@click.option("--device", help="cpu (default), cuda, cuda:N or auto.")
@click.option("--probe", is_flag=True, default=None, help="Watch every layer (probes) and store the statistics.")
@click.option("--probe-every", type=int, help="Sample every K-th step (1).")
@click.option("--probe-window", type=int, help="Steps per window of probe statistics (one epoch).")
@click.option("--config", "config_file", help="YAML or TOML file of these fields; options given here win.")
@click.option("--out", help="Run folder (new or empty; default runs/<time>-<data>-<activation>-<optimizer>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
def train_cmd(ctx, config_file, out, resume, quiet, as_json, **options) -> None:
    """Train an MLP and keep the run (config, metrics in Parquet, checkpoints) on disk."""
    from . import job
    from .config import TrainConfig, describe_error, load_file
    from .data import DataError
    from .store import StoreError

    given = {k: v for k, v in options.items() if v is not None}
    progress = not quiet and sys.stderr.isatty()
    try:
        if resume:
            if out is None:
                raise BadInput("--resume needs --out RUN, the run folder to continue")
            extra = sorted(set(given) - {"epochs"}) + (["config"] if config_file else [])
            if extra:
                raise BadInput(f"--resume continues the stored config; only --epochs may change, not "
                               f"--{extra[0].replace('_', '-')}")
            summary = job.resume(out, epochs=given.get("epochs"), progress=progress)
        else:
            fields = load_file(config_file) if config_file else {}
            fields.update(given)
            cfg = TrainConfig(**fields)
            if out is None:
                import time

                Path("runs").mkdir(exist_ok=True)
                out = f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{cfg.data.split(':')[0]}-{cfg.activation}-{cfg.optimizer}"
            summary = job.run(cfg, out, progress=progress)
    except ValidationError as err:
        raise BadInput(describe_error(err)) from None
    except (DataError, StoreError) as err:
        raise BadInput(str(err)) from None
    except ValueError as err:  # config files, devices, optimiser/scheduler arguments
        raise BadInput(str(err)) from None
    result = {k: v for k, v in summary.to_dict().items() if k != "history"}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"{summary.status}: {summary.steps} steps ({summary.epochs:.3g} epochs) in {summary.seconds:.1f} s; "
                   f"test accuracy {_fmt(summary.test_accuracy)}, test loss {_fmt(summary.test_loss)}, "
                   f"train loss {_fmt(summary.train_loss)}")
        click.echo(f"run: {summary.run_dir}")
    if summary.status != "finished":
        click.echo(f"{summary.status}: {summary.message}", err=True)
        sys.exit(130 if summary.status == "interrupted" else 1)


@main.group("runs")
def runs_group() -> None:
    """List, show, compare and query stored runs."""


def _open_runs(paths) -> list:
    from .store import Run, StoreError

    try:
        return [Run(p) for p in paths]
    except StoreError as err:
        raise BadInput(str(err)) from None


def _final(run) -> dict:
    """A run's last value of each epoch-level metric, and its status."""
    status = run.status()
    return {"run": run.name, "status": status.get("status"), "steps": status.get("steps"),
            "test_accuracy": status.get("test_accuracy"), "test_loss": status.get("test_loss"),
            "train_loss": status.get("train_loss"), "seconds": status.get("seconds")}


def _print_table(rows: list[dict], columns: list[str]) -> None:
    def cell(v) -> str:
        return _fmt(v) if isinstance(v, float) else ("-" if v is None else str(v))

    widths = {c: max([len(c)] + [len(cell(r.get(c))) for r in rows]) for c in columns}
    click.echo("  ".join(f"{c:<{widths[c]}}" for c in columns))
    for r in rows:
        click.echo("  ".join(f"{cell(r.get(c)):<{widths[c]}}" for c in columns))


@runs_group.command("list")
@click.argument("root", default="runs")
@click.option("--json", "as_json", is_flag=True)
def runs_list(root, as_json) -> None:
    """The runs in ROOT (default: runs) with their status and final numbers."""
    from .store import StoreError, list_runs

    try:
        runs = list_runs(root)
    except StoreError as err:
        raise BadInput(str(err)) from None
    rows = []
    for r in runs:
        c = r.config()
        rows.append({**_final(r), "data": c.get("data"), "model": f"{c.get('depth')}x{c.get('width')} "
                     f"{c.get('activation')}/{c.get('init')}", "optimizer": f"{c.get('optimizer')} lr={c.get('lr')}"})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no runs in {root}")
    else:
        _print_table(rows, ["run", "status", "data", "model", "optimizer", "steps", "test_accuracy", "test_loss"])


@runs_group.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
def runs_show(run, as_json) -> None:
    """One run: its config, status and the metrics of every epoch."""
    (r,) = _open_runs([run])
    from .store import query

    epochs = query("select epoch + 1 as epoch, max(step) as step, "
                   "max(value) filter (split = 'train_epoch' and name = 'loss') as train_loss, "
                   "max(value) filter (split = 'train_epoch' and name = 'accuracy') as train_accuracy, "
                   "max(value) filter (split = 'test' and name = 'loss') as test_loss, "
                   "max(value) filter (split = 'test' and name = 'accuracy') as test_accuracy "
                   "from metrics where split in ('test', 'train_epoch') group by epoch order by epoch", [r]).to_pylist()
    if as_json:
        click.echo(json.dumps({"run": r.name, "config": r.config(), "status": r.status(), "epochs": epochs}, indent=2))
        return
    click.echo(f"run {r.name}: {r.status().get('status')}")
    click.echo("config: " + ", ".join(f"{k}={v}" for k, v in r.config().items() if v is not None))
    _print_table(epochs, ["epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy"])


@runs_group.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--plot", "plot_dir", help="Folder for the figure of the curves.")
@click.option("--json", "as_json", is_flag=True)
def runs_compare(runs, plot_dir, as_json) -> None:
    """Final numbers of several runs side by side, and (--plot) their curves in one figure."""
    opened = _open_runs(runs)
    if len({r.name for r in opened}) < len(opened):
        raise BadInput("runs to compare must have distinct folder names")
    rows = []
    for r in opened:
        c = r.config()
        rows.append({**_final(r), **{k: c.get(k) for k in ("activation", "init", "optimizer", "lr", "schedule")}})
    if plot_dir:
        from . import plots

        folder = _output_folder(plot_dir)
        paths = plots.save(plots.run_curves(opened), folder, "compare")
        for row in rows:
            row["figure"] = str(paths[0])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows, ["run", "status", "activation", "init", "optimizer", "lr", "schedule", "steps",
                        "test_accuracy", "test_loss", "train_loss"])
    if plot_dir:
        click.echo(f"figure: {rows[0]['figure']}")


@runs_group.command("sql")
@click.argument("query_text", metavar="QUERY")
@click.option("--root", default="runs", show_default=True, help="Folder of runs to query.")
@click.option("--json", "as_json", is_flag=True)
def runs_sql(query_text, root, as_json) -> None:
    """DuckDB SQL over views `metrics` (run, step, epoch, split, name, value) and `runs` (run, status, config)."""
    import duckdb

    from .store import StoreError, list_runs, query

    try:
        rows = query(query_text, list_runs(root)).to_pylist()
    except StoreError as err:
        raise BadInput(str(err)) from None
    except duckdb.Error as err:
        raise BadInput(f"query failed: {str(err).splitlines()[0]}") from None
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    elif rows:
        _print_table(rows, list(rows[0]))


@main.command("inspect")
@click.argument("run")
@click.option("--plot", "plot_dir", help="Folder for the probe figures (histograms, heat maps, timelines, Glorot).")
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(run, plot_dir, as_json) -> None:
    """Findings in words, with numbers, from a run trained with --probe."""
    from .probes import findings

    (r,) = _open_runs([run])
    long, layers = r.table("probes"), r.table("probe_layers")
    if long is None:
        raise BadInput(f"run {run!r} has no probe statistics; train it with --probe")
    rows = findings.from_long(long.to_pylist(), layers.to_pylist() if layers is not None else [])
    found = findings.analyse(rows)
    figures = []
    if plot_dir:
        from . import plots

        folder = _output_folder(plot_dir)
        hists = {}
        for h in r.table("histograms").to_pylist():
            lo, hi, counts = hists.get((h["step"], h["layer"]), (h["lo"], h["hi"], []))
            hists[(h["step"], h["layer"])] = (min(lo, h["lo"]), max(hi, h["hi"]), counts + [h["count"]])
        for stem, fig in (("probe_histograms", plots.probe_histograms(hists)), ("probe_heatmaps", plots.probe_heatmaps(hists)),
                          ("probe_timelines", plots.probe_timelines(rows)), ("glorot_ratios", plots.glorot_ratios(rows))):
            figures.append(str(plots.save(fig, folder, stem)[0]))
    if as_json:
        last = max(x["last_step"] for x in rows)
        click.echo(json.dumps({"run": r.name, "step": last, "findings": [f.to_dict() for f in found],
                               "layers": [x for x in rows if x["last_step"] == last], "figures": figures}, indent=2))
        return
    if not found:
        click.echo(f"{r.name}: no findings (every rule within its threshold)")
    for f in found:
        click.echo(f"- {f.message}\n  try: {f.recommendation}")
    for path in figures:
        click.echo(f"figure: {path}")


@main.command("reproduce")
@click.option("--out", "out", required=True, help="Folder for report.html, claims.json, figures/, data/ and runs/ "
              "(new, empty, or written by an earlier reproduce).")
@click.option("--quick", is_flag=True, help="The small size of every experiment (minutes on a laptop CPU).")
@click.option("--only", default=None, help="Claims to check, comma-separated (C7,C15); default: all of C1-C21.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: the CPU count, at most the number of experiments).")
@click.option("--json", "as_json", is_flag=True, help="Print the claims' records as JSON.")
def reproduce_cmd(out, quick, only, seed, jobs, as_json) -> None:
    """Run the seeds' claims as experiments and write the report (the main job)."""
    import os

    from . import experiments, report

    try:
        experiments.select(only)
        result = experiments.reproduce(out, only=only, quick=quick, seed=seed, jobs=jobs or os.cpu_count() or 1,
                                       progress=not as_json)
    except ValueError as err:
        raise BadInput(str(err)) from None
    paths = report.write(out, result["claims"], seed=seed, quick=quick)
    claims = result["claims"]
    if as_json:
        click.echo(json.dumps(claims, indent=2))
    else:
        for c in claims:
            click.echo(f"{c['id']:>4}  {c['verdict']:<5}  {c['why']}")
        passed = sum(c["verdict"] == "pass" for c in claims)
        click.echo(f"{passed} of {len(claims)} claims pass; {result['wall_seconds']:.0f} s")
        for p in paths:
            click.echo(str(p))
    if any(c["verdict"] == "error" for c in claims):
        sys.exit(1)


def run() -> None:
    """Console-script entry point."""
    main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
