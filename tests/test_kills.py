"""Kills at random moments (issue 17): ``train`` and ``reproduce`` killed with SIGKILL anywhere in the
run, from the command's start to its last write; afterwards ``runs list`` and ``runs show`` work and
resuming ends exactly where an uninterrupted run ends.

The commands run in processes forked from a server that has imported torch and gradientflow already
(``multiprocessing``'s forkserver), so each costs the run, not the 2-4 s of a fresh interpreter's
imports, and the kill moments spread over the run itself. One intra-op thread, as in
``test_cli_train.ONE_THREAD``."""

import json
import multiprocessing
import os
import random
import signal
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


def _running(path, proc, timeout: float = 60.0) -> bool:
    """Wait until the run at ``path`` says it is training (its signal handlers are in place)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.is_alive():
        if (path / "status.json").exists() and Run(path).status().get("status") == "running":
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_checkpoints_where_it_lands_and_resumes_bit_identical(tmp_path, forks, sig):
    """Checkpoints go by the clock (at most one per ``train.CHECKPOINT_SECONDS``): a short run writes one,
    at its end. SIGTERM or SIGINT during training ends the step, writes a checkpoint at it, exits with
    130, and resuming from there ends bit-identical to the uninterrupted run."""
    args = [a for a in TRAIN if a not in ("--checkpoint-every", "7")]
    args[args.index("--epochs") + 1] = "150"  # long enough for the signal to land inside training
    assert _run(forks, [*args, "--out", tmp_path / "whole"], tmp_path / "whole.log") == 0
    whole = Run(tmp_path / "whole")
    steps = whole.status()["steps"]
    assert [s for s, _ in whole._parts("checkpoints")] == [steps] and len(whole._parts("metrics")) == 1
    whole_model, whole_rows = _state(tmp_path / "whole")
    out = tmp_path / "cut"
    proc = _start(forks, [*args, "--out", out], tmp_path / "cut.log")
    assert _running(out, proc), (tmp_path / "cut.log").read_text()
    time.sleep(random.Random(int(sig)).uniform(0.05, 0.3))
    os.kill(proc.pid, sig)
    proc.join()
    status = Run(out).status()
    assert proc.exitcode == 130 and status["status"] == "interrupted", (proc.exitcode, status)
    stopped = status["steps"]
    assert 0 < stopped < steps and f"stopped by {sig.name} at step {stopped}" in status["message"]
    assert [s for s, _ in Run(out)._parts("checkpoints")] == [stopped]
    assert _run(forks, ["train", "--resume", "--out", out, "--quiet"], tmp_path / "resume.log") == 0
    model, rows = _state(out)
    assert all(torch.equal(whole_model[n], model[n]) for n in whole_model)
    order = lambda rows: sorted(rows, key=lambda r: (r["step"], r["split"], r["name"]))  # noqa: E731
    assert order(rows) == order(whole_rows)  # each step's rows once (their order follows the guard's reads)
