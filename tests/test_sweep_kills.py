"""Sweeps under kills: a sweep killed by ``kill -9`` takes its worker processes with it, so the same
command goes on at once with nothing failed; a worker killed mid-cell (as the out-of-memory killer
kills it) fails that cell alone, named, and the sweep goes on; an ``--out`` that is not new, empty or
the same spec's sweep is refused in one line, exit 2, before anything is written."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gradientflow.cli import main
from gradientflow.store import Run
from gradientflow.sweep import SweepSpec, read_results

BASE = {"data": "xor", "n_train": 256, "n_test": 128, "epochs": 2, "batch_size": 64, "activation": "tanh",
        "init": "meanfield", "sigma_b2": 0.05, "optimizer": "sgd", "lr": 0.1}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


def _spec(tmp_path, spec, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _sweep(spec_file, out, *args, env=ENV, **popen):
    cmd = [sys.executable, "-m", "gradientflow.cli", "sweep", "run", spec_file, "--out", str(out), "--quiet",
           "--json", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, **popen)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: no psutil needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by whoever adopted it, holds no memory and no lock)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@linux
def test_a_sweep_killed_by_kill_9_takes_its_workers_and_the_same_command_goes_on(tmp_path):
    # cells of some seconds: an orphan would still be training, and holding its lock, when the re-run starts
    base = {**BASE, "n_train": 4096, "batch_size": 256, "width": 512, "epochs": 40, "checkpoint_every": 64}
    spec = _spec(tmp_path, {"base": base, "grid": {"depth": [2, 3]}})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gradientflow.cli", "sweep", "run", spec, "--out", str(out), "--workers", "2",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once both workers train a cell (each holds its run's lock)
        if len(list(out.glob("runs/cell-*/config.json"))) == 2:
            break
        time.sleep(0.05)
    children = _children(proc.pid)  # the two workers and multiprocessing's resource tracker
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(children) >= 2, children
    left = {Run(p).status()["status"] for p in out.glob("runs/cell-*")}
    assert not left & {"finished", "diverged"}, "killed too late: nothing tested"
    deadline = time.monotonic() + 2  # the kernel kills them at once; the watching thread within a second
    while any(map(_alive, children)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if _alive(pid)], "orphans outlived the killed sweep"
    again = _sweep(spec, out, "--workers", "2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout) == {"cells": 2, "finished": 2, "diverged": 0, "failed": 0,
                                        "results": str(out / "results.parquet")}


def test_a_worker_killed_mid_cell_fails_that_cell_alone_and_the_sweep_goes_on(tmp_path):
    raw = {"base": BASE, "grid": {"depth": [1, 2, 3]}}
    spec, cells = _spec(tmp_path, raw), SweepSpec.parse(raw).cells()
    victim = cells[1].name
    out = tmp_path / "out"
    r = _sweep(spec, out, "--workers", "2", env={**ENV, "GRADIENTFLOW_TEST_KILL_CELL": victim})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert json.loads(r.stdout) == {"cells": 3, "finished": 2, "diverged": 0, "failed": 1,
                                    "results": str(out / "results.parquet")}
    rows = {row["cell"]: row for row in read_results(out)}
    assert rows[victim]["status"] == "failed"
    assert rows[victim]["message"] == "worker lost: killed by signal 9 (SIGKILL)"
    assert all(rows[c.name]["status"] == "finished" for c in cells if c.name != victim)
    again = _sweep(spec, out)  # the same command again trains the lost cell
    assert again.returncode == 0 and json.loads(again.stdout)["finished"] == 3, again.stderr[-2000:]


def _snapshot(path: Path) -> dict:
    """Every file under ``path`` (or ``path`` itself) by relative name, with its bytes' hash."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*"))
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in files}


def _another_sweep(tmp_path, out):
    spec = _spec(tmp_path, {"base": {**BASE, "epochs": 1}, "grid": {"lr": [0.1, 0.2]}}, "first.yaml")
    for _ in range(2):  # the same spec again is this sweep's folder: accepted, its ended cells kept
        r = CliRunner().invoke(main, ["sweep", "run", spec, "--out", str(out), "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["finished"] == 2, r.output


def _damaged_spec(tmp_path, out):
    out.mkdir()
    (out / "spec.json").write_text('{"base": ')


def _run_folder(tmp_path, out):
    Run.create(out, {**BASE, "depth": 1})


def _foreign_results(tmp_path, out):
    out.mkdir()
    (out / "results.parquet").write_bytes(b"PAR1 someone else's table PAR1")
    (out / "runs").mkdir()


def _foreign_files(tmp_path, out):
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")


def _a_file(tmp_path, out):
    out.write_text("not a folder\n")


@pytest.mark.parametrize("make, line", [
    (_another_sweep, "holds another sweep (spec differs); give a new folder"),
    (_damaged_spec, "has a spec.json that does not read"),
    (_run_folder, "is a run folder (it has config.json)"),
    (_foreign_results, "holds files that are not a sweep's ('results.parquet'"),
    (_foreign_files, "holds files that are not a sweep's ('notes.txt'"),
    (_a_file, "is a file, not a folder"),
])
def test_an_out_that_is_not_this_sweeps_is_refused_in_one_line_and_left_untouched(tmp_path, make, line):
    out = tmp_path / "out"
    make(tmp_path, out)
    before = _snapshot(out)
    spec = _spec(tmp_path, {"base": BASE, "grid": {"depth": [1, 2]}})
    r = CliRunner().invoke(main, ["sweep", "run", spec, "--out", str(out), "--workers", "2"])
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.output
    assert r.stderr.startswith("error: --out ") and line in r.stderr and "Traceback" not in r.output, r.stderr
    assert _snapshot(out) == before


def test_an_empty_out_or_one_left_by_a_kill_before_its_spec_landed_is_used(tmp_path):
    spec = _spec(tmp_path, {"base": {**BASE, "epochs": 1}, "grid": {"depth": [1, 2]}})
    empty, cut = tmp_path / "empty", tmp_path / "cut"
    empty.mkdir()
    cut.mkdir()
    (cut / ".spec.json.k2j4x9ab.tmp").write_text('{"ba')  # a kill in the middle of spec.json's write
    for out in (empty, cut):
        r = CliRunner().invoke(main, ["sweep", "run", spec, "--out", str(out), "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["finished"] == 2, r.output


def test_a_sweep_folder_with_linked_runs_is_refused_and_the_victim_untouched(tmp_path):
    """As in the run store: a link inside the sweep's folder would send cells into someone's folder."""
    from gradientflow.sweep import SweepSpec, run_sweep

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "runs").symlink_to(victim)
    spec = SweepSpec.parse({"base": {"data": "xor", "epochs": 1, "width": 4}, "grid": {"lr": [0.1, 0.2]}})
    with pytest.raises(ValueError, match="symbolic link"):
        run_sweep(spec, out)
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
