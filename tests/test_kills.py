"""Kills at random moments (issue 17): ``train`` and ``reproduce`` killed with SIGKILL anywhere in the
run, from the command's start to its last write; afterwards ``runs list`` and ``runs show`` work and
resuming ends exactly where an uninterrupted run ends.

The commands run in processes forked from a server that has imported torch and gradientflow already
(``multiprocessing``'s forkserver), so each costs the run, not the 2-4 s of a fresh interpreter's
imports, and the kill moments spread over the run itself. One intra-op thread, as in
``test_cli_train.ONE_THREAD``."""

import json
import multiprocessing
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from click.testing import CliRunner

from gradientflow.cli import main
from gradientflow.store import Run

KILLS = 20
TRAIN = ["train", "--data", "spiral", "--n-train", "512", "--width", "32", "--epochs", "30", "--batch-size", "32",
         "--checkpoint-every", "7", "--quiet"]


def _command(args: list[str], log: str) -> None:
    """A forked child: the CLI with ``args``, its output in ``log``; the exit code is the process's."""
    torch.set_num_threads(1)
    from gradientflow.cli import run

    sys.stdout = sys.stderr = open(log, "w")  # noqa: SIM115 - the process ends with the command
    sys.argv = ["gradientflow", *args]
    run()


@pytest.fixture(scope="module")
def forks():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "gradientflow.cli", "gradientflow.job", "torch._dynamo", "__main__"])
    return ctx


def _start(ctx, args, log):
    proc = ctx.Process(target=_command, args=([str(a) for a in args], str(log)))
    proc.start()
    return proc


def _run(ctx, args, log) -> int:
    proc = _start(ctx, args, log)
    proc.join()
    return proc.exitcode


def _killed_at(ctx, args, log, seconds: float) -> None:
    proc = _start(ctx, args, log)
    proc.join(seconds)
    proc.kill()  # SIGKILL
    proc.join()


def _state(path):
    run = Run(path)
    model = torch.load(run.latest_checkpoint()[1], weights_only=True)["model"]
    return model, run.metrics().to_pylist()


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_killed_at_20_random_moments_resumes_bit_identical(tmp_path, forks):
    assert _run(forks, [*TRAIN, "--out", tmp_path / "first"], tmp_path / "first.log") == 0  # starts the server
    started = time.perf_counter()
    assert _run(forks, [*TRAIN, "--out", tmp_path / "whole"], tmp_path / "whole.log") == 0
    span = time.perf_counter() - started  # a forked command's whole life: the kills are spread over it
    whole_model, whole_rows = _state(tmp_path / "whole")
    assert _state(tmp_path / "first")[1] == whole_rows
    moments = [random.Random(k).uniform(0.0, span) for k in range(KILLS)]
    outs = [tmp_path / "cut" / f"{k}" for k in range(KILLS)]
    (tmp_path / "cut").mkdir()
    with ThreadPoolExecutor(2) as pool:  # one thread per process: two at a time on two cores
        list(pool.map(lambda k: _killed_at(forks, [*TRAIN, "--out", outs[k]], f"{outs[k]}.log", moments[k]),
                      range(KILLS)))
    listed = invoke("runs", "list", tmp_path / "cut", "--json")  # every killed run lists
    assert listed.exit_code == 0, listed.output
    assert {r["status"] for r in json.loads(listed.output)} <= {"created", "running", "finished"}
    for k, out in enumerate(outs):
        if (out / "config.json").exists():
            assert invoke("runs", "show", out).exit_code == 0, f"killed at {moments[k]:.2f} s"
        else:  # killed before the run folder was made: nothing half-made stands in the way of the same command
            assert not out.exists()

    def resume(k: int) -> int:
        args = ["train", "--resume", "--out", outs[k]] if (outs[k] / "config.json").exists() else [*TRAIN, "--out", outs[k]]
        return _run(forks, args, f"{outs[k]}.resume.log")

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(resume, range(KILLS)))
    for k, out in enumerate(outs):
        assert codes[k] == 0, f"killed at {moments[k]:.2f} s: " + open(f"{out}.resume.log").read()
        model, rows = _state(out)
        assert all(torch.equal(whole_model[n], model[n]) for n in whole_model), f"killed at {moments[k]:.2f} s"
        assert rows == whole_rows, f"killed at {moments[k]:.2f} s: the metrics differ"
    assert not list((tmp_path / "cut").glob(".*.tmp"))  # no half-made run folder left behind


def test_reproduce_killed_at_random_moments_resumes_to_the_same_claims(tmp_path, forks):
    args = ["reproduce", "--quick", "--only", "C2,C14,C18", "--jobs", "1", "--json"]
    assert _run(forks, ["runs", "list", tmp_path], tmp_path / "first.log") == 0  # starts the server
    started = time.perf_counter()
    assert _run(forks, [*args, "--out", tmp_path / "whole"], tmp_path / "whole.log") == 0
    span = time.perf_counter() - started
    whole = json.loads((tmp_path / "whole" / "claims.json").read_text())
    for k in range(4):
        out = tmp_path / f"cut{k}"
        _killed_at(forks, [*args, "--out", out], tmp_path / f"cut{k}.log", random.Random(100 + k).uniform(0, span))
        code = _run(forks, [*args, "--out", out, "--resume"], tmp_path / f"resume{k}.log")
        if code == 2:  # killed before the folder was marked as reproduce's: the same command again
            assert "has no readable reproduce.json" in (tmp_path / f"resume{k}.log").read_text()
            code = _run(forks, [*args, "--out", out], tmp_path / f"again{k}.log")
        assert code == 0, (tmp_path / f"resume{k}.log").read_text()
        assert json.loads((out / "claims.json").read_text()) == whole
