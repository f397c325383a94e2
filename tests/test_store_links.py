"""Symbolic links planted inside a run (issue 30): a run received from elsewhere, or kept on a shared
volume, must not make ``train --resume`` write, truncate or delete a file outside the run. Each test
plants one link to a victim, runs what used to follow it, and checks the victim byte for byte."""

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradientflow import job
from gradientflow.cli import main
from gradientflow.config import TrainConfig
from gradientflow.store import Run, StoreError

CFG = dict(data="digits", n_train=160, n_test=40, depth=1, width=8, batch_size=32, epochs=2, checkpoint_every=2)


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (not following links) and its content's hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def run(tmp_path) -> Run:
    job.run(TrainConfig(**CFG), tmp_path / "run")
    return Run(tmp_path / "run")


@pytest.fixture
def victim(tmp_path) -> Path:
    """Someone else's folder: a precious file, checkpoint-like and Parquet-like names that a rewind or
    a checkpoint rotation would delete if it followed a link here."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_text("do not touch\n")
    for name in ("step-000000001.pt", "step-000000002.pt", "part-000999999.parquet", "probes-000999999.parquet"):
        (folder / name).write_bytes(os.urandom(64))
    return folder


def _resume(run: Run):
    return CliRunner().invoke(main, ["train", "--resume", "--out", str(run.path), "--epochs", "4", "--quiet"])


def _replace_with_link(path: Path, target: Path) -> None:
    if path.is_dir():
        for p in path.iterdir():
            p.unlink()
        path.rmdir()
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize("inside, target", [
    (".lock", "precious.txt"),      # was: opened with O_CREAT and truncated to the resuming process's pid
    ("checkpoints", "."),           # was: the victim's step-*.pt deleted, new checkpoints written there
    ("metrics", "."),               # was: the rewind deleted the victim's part-*.parquet
    ("tables", "."),
    ("status.json", "precious.txt"),
])
def test_a_link_inside_the_run_is_refused_and_the_victim_untouched(run, victim, inside, target):
    before = _fingerprint(victim)
    _replace_with_link(run.path / inside, victim / target)
    res = _resume(run)
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "symbolic link" in line and repr(str(run.path / inside)) in line
    assert _fingerprint(victim) == before
    assert any(inside in problem and "symbolic link" in problem for problem in run.damage())


def test_a_linked_part_is_never_read_nor_deleted(run, victim):
    before = _fingerprint(victim)
    link = run.path / "metrics" / "part-000999999.parquet"  # after every checkpoint: a rewind would delete it
    link.symlink_to(victim / "part-000999999.parquet")
    assert all(p != link for _, p in run._parts("metrics"))
    run.rewind(0)
    assert link.is_symlink() and _fingerprint(victim) == before
    listed = CliRunner().invoke(main, ["runs", "list", str(run.path.parent), "--json"])
    assert listed.exit_code == 0 and '"damaged"' in listed.output


def test_a_linked_config_is_not_read(run, victim):
    _replace_with_link(run.path / "config.json", victim / "precious.txt")
    with pytest.raises(StoreError, match="symbolic link"):
        run.config()


def test_the_lock_refuses_a_link_planted_after_the_check(run, victim, monkeypatch):
    """The check before locking can be raced; opening the lock with O_NOFOLLOW cannot."""
    before = _fingerprint(victim)
    (run.path / ".lock").unlink(missing_ok=True)
    (run.path / ".lock").symlink_to(victim / "precious.txt")
    monkeypatch.setattr(Run, "links", lambda self: [])
    with pytest.raises(StoreError, match=r"cannot lock .*\.lock"):
        with run.writing():
            pass
    assert _fingerprint(victim) == before


def test_checkpoint_rotation_never_deletes_through_a_linked_folder(run, victim, monkeypatch):
    before = _fingerprint(victim)
    _replace_with_link(run.path / "checkpoints", victim)
    monkeypatch.setattr(Run, "links", lambda self: [])  # as if the link appeared mid-run
    assert run.latest_checkpoint() is None  # the linked folder's step-*.pt are not the run's
    run.rewind(0)
    assert _fingerprint(victim) == before
