"""``train``: an MLP run kept on disk (config, metrics in Parquet, checkpoints), and ``--resume``."""

from __future__ import annotations

import math
import sys

import click

from .. import catalog
from .app import BadInput, bad_input, main
from .render import echo_json, fmt


@main.command("train")
@click.option("--data", help=f"{catalog.listed('data')}, idx:DIR or npz:FILE (mnist1d).")
@click.option("--n-train", type=int, help="Training samples (default: the dataset's usual size).")
@click.option("--n-test", type=int, help="Test samples.")
@click.option("--noise", type=float, help="Noise of generated sets (0.1).")
@click.option("--data-seed", type=int, help="Seed of generated data (default: the dataset's standard one).")
@click.option("--normalize", help=f"{catalog.listed('normalize')} (standardize, fitted on train; shift: inputs >= 0).")
@click.option("--depth", type=int, help="Hidden layers; 0 = logistic regression (2).")
@click.option("--width", type=int, help="Units per hidden layer (100).")
@click.option("--activation", help=f"Hidden activation: {catalog.listed('activation')} (relu).")
@click.option("--init", help=f"Initialiser: {catalog.listed('init')} (he).")
@click.option("--std", type=float, help="normal/uniform: weight std.")
@click.option("--gain", type=float, help="xavier/lecun/orthogonal: gain on the std.")
@click.option("--sigma-w2", type=float, help="meanfield: W ~ N(0, sigma_w2 / fan_in) (1).")
@click.option("--sigma-b2", type=float, help="meanfield: b ~ N(0, sigma_b2) (0).")
@click.option("--optimizer", help=f"{catalog.listed('optimizer')} (adam).")
@click.option("--lr", type=float, help="Learning rate alpha (1e-3).")
@click.option("--momentum", type=float, help="mu: momentum, or Adam's beta1 (0.9).")
@click.option("--rho", type=float, help="rho: RMSProp's decay, Adam's beta2.")
@click.option("--eps", type=float, help="delta under the square root (adagrad, rmsprop, adam, adamw).")
@click.option("--bias-correction", help="adam: both (default), second (v uncorrected) or none (C13).")
@click.option("--weight-decay", type=float, help="L2 weight decay (0).")
@click.option("--clip-norm", type=float, help="Clip the total gradient norm to this.")
@click.option("--clip-value", type=float, help="Clip every gradient entry to [-v, v].")
@click.option("--schedule", help=f"{catalog.listed('schedule')} (constant).")
@click.option("--step-size", type=int, help="step schedule: steps between decays (a third of the run).")
@click.option("--gamma", type=float, help="step/exponential schedule: decay factor.")
@click.option("--warmup-steps", type=int, help="Linear warm-up steps in front of any schedule.")
@click.option("--epochs", type=int, help="Epochs (20).")
@click.option("--batch-size", type=int, help="Mini-batch size (128).")
@click.option("--seed", type=int, help="Seed of the weights and the shuffling (0).")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints (default: by the clock, at most one per 30 s, and at the end).")
@click.option("--grad-norm-every", type=int, help="Steps between logged total gradient norms (50; 1: every step).")
@click.option("--device", help="cpu (default), cuda, cuda:N or auto.")
@click.option("--probe", is_flag=True, default=None, help="Watch every layer (probes) and store the statistics.")
@click.option("--probe-every", type=int, help="Sample every K-th step (1).")
@click.option("--probe-window", type=int, help="Steps per window of probe statistics (one epoch).")
@click.option("--config", "config_file", help="YAML or TOML file of these fields; options given here win.")
@click.option("--out", help="Run folder (new or empty; default runs/<time>-<data>-<activation>-<optimizer>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint (options that "
              "are given must equal the stored ones; only --epochs may change).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.option("--max-memory", default=None, help="Refuse a run whose estimated memory exceeds this (512M, 8G; "
              "default: this machine's memory).")
def train_cmd(config_file, out, resume, quiet, as_json, max_memory, **options) -> None:
    """Train an MLP and keep the run (config, metrics in Parquet, checkpoints) on disk."""
    from .. import job, memory
    from ..config import TrainConfig, load_file

    given = {k: v for k, v in options.items() if v is not None}
    progress = not quiet and sys.stderr.isatty()
    if resume and out is None:
        raise BadInput("--resume needs --out RUN, the run folder to continue")
    with bad_input():
        limit = memory.parse(max_memory) if max_memory is not None else None
        asked = {**(load_file(config_file) if config_file else {}), **given}  # options given here win
        if resume:  # the same command line again (plus --resume) is accepted; a changed value is refused
            summary = job.resume(out, epochs=given.get("epochs"), progress=progress, same_as=asked, max_memory=limit)
        else:
            cfg = TrainConfig(**asked)
            summary = job.run(cfg, out or job.default_folder(cfg), progress=progress, max_memory=limit)
    if as_json:
        echo_json({k: v for k, v in summary.to_dict().items() if k != "history"})
    else:
        score = f"test accuracy {fmt(summary.test_accuracy)}" if math.isnan(summary.test_r2) else \
            f"test R² {fmt(summary.test_r2)}"  # a regression run has no accuracy
        click.echo(f"{summary.status}: {summary.steps} steps ({summary.epochs:.3g} epochs) in {summary.seconds:.1f} s; "
                   f"{score}, test loss {fmt(summary.test_loss)}, "
                   f"train loss {fmt(summary.train_loss)}")
        click.echo(f"run: {summary.run_dir}")
    if summary.status != "finished":
        click.echo(f"{summary.status}: {summary.message}", err=True)
        sys.exit(130 if summary.status == "interrupted" else 1)
