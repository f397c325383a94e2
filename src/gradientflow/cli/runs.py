"""``runs list|show|compare|sql``: the stored runs, their epochs, side by side, and SQL over them."""

from __future__ import annotations

import click

from .app import BadInput, bad_input, main, open_runs, output_folder
from .render import echo_json, table


@main.group("runs")
def runs_group() -> None:
    """List, show, compare and query stored runs."""


@runs_group.command("list")
@click.argument("root", default="runs")
@click.option("--json", "as_json", is_flag=True)
def runs_list(root, as_json) -> None:
    """The runs in ROOT (default: runs) with their status and final numbers."""
    from ..store import list_runs

    with bad_input():
        runs = list_runs(root)
    rows = []
    for r in runs:
        damage = r.damage()
        if damage:  # listed and marked, so that one bad file does not hide the other runs
            rows.append({**r.final(), "status": "damaged", "damage": damage})
            continue
        rows.append({**r.final(), **_described(r.config())})
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo(f"no runs in {root}")
    else:
        table(rows, ["run", "status", "data", "model", "optimizer", "steps", "test_accuracy", "test_loss", *_r2(rows)])
        for row in rows:
            for problem in row.get("damage", []):
                click.echo(f"damaged: {problem}")


def _r2(rows: list[dict]) -> list[str]:
    """The test R² column when a regression run is among ``rows`` (a classification run has none)."""
    return ["test_r2"] if any("test_r2" in row for row in rows) else []


def _described(c: dict) -> dict:
    """The data, model and optimiser columns of a run: ours from its config; a trainer callback's
    run (Lightning, Hugging Face) names its trainer and its model's class, with '-' for what it does not record."""
    if c.get("integration"):
        return {"data": "-", "model": f"{c.get('model')} ({c['integration']})", "optimizer": "-"}
    return {"data": c.get("data"), "model": f"{c.get('depth')}x{c.get('width')} {c.get('activation')}/{c.get('init')}",
            "optimizer": f"{c.get('optimizer')} lr={c.get('lr')}"}


@runs_group.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
def runs_show(run, as_json) -> None:
    """One run: its config, status and the metrics of every epoch."""
    (r,) = open_runs([run])
    with bad_input():  # a damaged file: one line naming it
        epochs, config = r.epochs(), r.config()
    if as_json:
        echo_json({"run": r.name, "config": config, "status": r.status(), "epochs": epochs})
        return
    click.echo(f"run {r.name}: {r.status().get('status')}")
    click.echo("config: " + ", ".join(f"{k}={v}" for k, v in config.items() if v is not None))
    r2 = ["test_r2"] if epochs and "test_r2" in epochs[0] else []  # a regression run
    table(epochs, ["epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", *r2])


@runs_group.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--plot", "plot_dir", help="Folder for the figure of the curves.")
@click.option("--json", "as_json", is_flag=True)
def runs_compare(runs, plot_dir, as_json) -> None:
    """Final numbers of several runs side by side, and (--plot) their curves in one figure."""
    opened = open_runs(runs)
    if len({r.name for r in opened}) < len(opened):
        raise BadInput("runs to compare must have distinct folder names")
    rows = [{**r.final(), **{k: r.config().get(k) for k in ("activation", "init", "optimizer", "lr", "schedule")}}
            for r in opened]
    if plot_dir:
        from .. import plots

        figure = str(plots.save(plots.run_curves(opened), output_folder(plot_dir), "compare")[0])
        rows = [{**row, "figure": figure} for row in rows]
    if as_json:
        echo_json(rows)
        return
    table(rows, ["run", "status", "activation", "init", "optimizer", "lr", "schedule", "steps",
                 "test_accuracy", "test_loss", "train_loss", *_r2(rows)])
    if plot_dir:
        click.echo(f"figure: {rows[0]['figure']}")


@runs_group.command("sql")
@click.argument("query_text", metavar="QUERY")
@click.option("--root", default="runs", show_default=True, help="Folder of runs to query.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds before the query is stopped (0.1 to 3600).")
@click.option("--max-memory", default="1GB", show_default=True,
              help="DuckDB's memory for the query, e.g. 512MB or 4GB; nothing spills to disk.")
@click.option("--limit", type=int, default=10000, show_default=True,
              help="Most rows to show (1 to 1000000); a cut result says so on stderr.")
@click.option("--json", "as_json", is_flag=True)
def runs_sql(query_text, root, timeout, max_memory, limit, as_json) -> None:
    """One DuckDB SELECT over `metrics` (run, step, epoch, split, name, value) and `runs` (run, status, config);
    read-only: no COPY, ATTACH, INSTALL, writes or file access; bounded by --timeout, --max-memory and --limit.

    Config fields named `run` or `status` are renamed `config_run`, `config_status`; a field with
    different types across runs is text, and a nested value is JSON text."""
    import duckdb

    from ..sql import query, truncated
    from ..store import list_runs

    with bad_input():
        runs = list_runs(root)
    try:
        with bad_input():  # not a single SELECT, a limit out of range or hit, a damaged part
            result = query(query_text, runs, timeout=timeout, max_memory=max_memory, limit=limit)
    except duckdb.Error as err:
        raise BadInput(f"query failed: {str(err).splitlines()[0]}") from None
    rows = result.to_pylist()
    if as_json:
        echo_json(rows, default=str)
    elif rows:
        table(rows, list(rows[0]))
    if truncated(result):  # on stderr: --json output stays one JSON document
        click.echo(f"note: first {limit} rows shown; more matched (--limit)", err=True)


@runs_group.command("export")
@click.argument("run")
@click.option("--tensorboard", "tb_dir", required=True,
              help="Folder for TensorBoard event files (new, or empty); view with: tensorboard --logdir DIR.")
@click.option("--json", "as_json", is_flag=True)
def runs_export(run, tb_dir, as_json) -> None:
    """A stored run's metrics, per-layer probe statistics and activation histograms as TensorBoard events."""
    from ..integrations import tensorboard

    (r,) = open_runs([run])
    folder = output_folder(tb_dir)
    if any(folder.iterdir()):
        raise BadInput(f"--tensorboard {tb_dir!r} is not empty; give a new or empty folder")
    with bad_input():
        counts = tensorboard.export(r, folder)
    if as_json:
        echo_json(counts)
        return
    click.echo(f"{counts['scalars']} scalars and {counts['histograms']} histograms in {counts['folder']}; "
               f"view with: tensorboard --logdir {counts['folder']}")
