"""A run directory (``Run``): its layout, its metric and table parts, its checkpoints, and the
repairs after a kill (``rewind``, ``damage``); ``list_runs`` finds the runs in a folder."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ..thinning import every_second_older
from . import atomic, lock, queries
from .atomic import first_line, write_atomic, write_json
from .errors import StoreError
from .parts import (METRIC_SCHEMA, PART, footer_schema, load_converters, read_part, same_columns, same_schema,
                    table_schema)
from .writer import Writer

_FOLDERS = ("metrics", "tables", "checkpoints")
_FILES = ("config.json", "status.json", ".lock")


def _named(paths: list[Path]) -> str:
    return ", ".join(repr(str(p)) for p in paths)


def _read_own(path: Path) -> str:
    """A small text file of the run, opened without following a symbolic link (OSError if it is one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(err.errno, "a symbolic link (not followed)") from None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


class Run:
    """A run directory. ``Run.create`` makes a new one; ``Run(path)`` opens an existing one."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise StoreError(f"{str(self.path)!r} is not a run (no config.json)")
        self._writer: Writer | None = None
        self._locked = False

    def links(self) -> list[Path]:
        """The symbolic links among the run's own files and folders (and inside its folders); a
        gradientflow run has none, and the store follows none of them."""
        found = [self.path / n for n in (*_FILES, *_FOLDERS) if (self.path / n).is_symlink()]
        for folder in _FOLDERS:
            if (self.path / folder).is_dir() and not (self.path / folder).is_symlink():
                found += [p for p in (self.path / folder).iterdir() if p.is_symlink()]
        return sorted(found)

    def _refuse_links(self) -> None:
        links = self.links()
        if links:
            raise StoreError(f"{str(self.path)!r} is not written: {_named(links)} "
                             f"{'is a symbolic link' if len(links) == 1 else 'are symbolic links'} "
                             "(a run's files must be its own; remove the links)")

    @contextmanager
    def background(self):
        """Inside the block, ``append_metrics``, ``append_table``, ``save_checkpoint`` and ``set_status``
        return at once and their writes happen in order on a background thread; leaving the block
        waits until every write has landed. A write's error is raised in the caller's thread (at the
        next write or on leaving), so a full disk still stops the run with its own message."""
        if self._writer is not None:  # nested: the outer block already writes in the background
            yield self
            return
        self._writer = writer = Writer()
        try:
            yield self
        except BaseException:
            self._writer = None
            writer.close(raise_error=False)  # the block's own error is the one to report
            raise
        self._writer = None
        writer.close()

    @contextmanager
    def writing(self):
        """Hold the run's lock for the block: one process at a time trains into a run (a second
        ``train --resume`` is refused instead of interleaving its writes). The lock is an advisory
        ``flock`` on ``RUN/.lock``, which the kernel releases when the holder dies, even by ``kill -9``."""
        if self._locked:  # re-entered by the holder
            yield self
            return
        with lock.hold(self.path / ".lock", self._refuse_links):
            self._locked = True
            try:
                yield self
            finally:
                self._locked = False

    def _write(self, job: Callable[[], None]) -> None:
        if self._writer is not None:
            self._writer.submit(job)
        else:
            job()

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict) -> "Run":
        """A new run directory; refuses a folder that already has content, so nothing is overwritten."""
        path = Path(path)
        load_converters()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise StoreError(f"{str(path)!r} already exists and is not empty; choose a new folder or resume it")
        if not path.parent.is_dir():
            raise StoreError(f"parent folder {str(path.parent)!r} does not exist")
        # built beside it and renamed into place (onto an empty folder too), so that a kill half-way
        # leaves no half-made run folder that would refuse the same command again; the temporary
        # folder such a kill leaves behind is removed by the next create of the same run
        stale = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
        for left in path.parent.iterdir():
            if stale.fullmatch(left.name) and left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            tmp.chmod(0o777 & ~atomic._UMASK)  # mkdtemp's folder is private; the umask write_atomic uses
            for sub in ("metrics", "tables", "checkpoints"):
                (tmp / sub).mkdir()
            write_json(tmp / "status.json", {"status": "created"})
            write_json(tmp / "config.json", config)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> dict:
        path = self.path / "config.json"
        try:
            config = json.loads(_read_own(path))
        except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
            raise StoreError(f"{str(path)!r} is damaged: {first_line(err)}") from None
        if not isinstance(config, dict):
            raise StoreError(f"{str(path)!r} is damaged: not a mapping of field: value")
        return config

    def damage(self) -> list[str]:
        """What is damaged in the run (config.json, Parquet parts, checkpoints), one line each; [] when
        every file reads. Parquet parts and checkpoints are checked by their footer and zip directory."""
        import zipfile

        problems = [f"{str(p)!r} is a symbolic link (not followed)" for p in self.links()]
        try:
            self.config()
        except StoreError as err:
            problems.append(str(err))
        expected: dict[str, pa.Schema] = {}  # a table's parts share its first part's columns
        for folder in ("metrics", "tables"):
            for _, part in self._parts(folder):
                kind = PART.match(part.name)["kind"]
                try:
                    found = footer_schema(part)
                    if folder == "metrics":
                        same_schema(part, found, METRIC_SCHEMA)
                    elif kind in expected:
                        same_columns(part, found, expected[kind])
                    else:
                        expected[kind] = table_schema(part, found)
                except StoreError as err:
                    problems.append(str(err))
        for _, ckpt in self._parts("checkpoints"):
            if not zipfile.is_zipfile(ckpt):
                problems.append(f"{str(ckpt)!r} is damaged: not a whole checkpoint")
        return problems

    def status(self) -> dict:
        try:
            return json.loads(_read_own(self.path / "status.json"))
        except (OSError, ValueError):
            return {"status": "unknown"}

    def set_status(self, status: str, **summary) -> None:
        record = {"status": status, **summary}
        self._write(lambda: write_json(self.path / "status.json", record))

    # --- metrics and tables ---

    def append_metrics(self, step: int, rows: dict[str, list]) -> None:
        """Write the rows logged up to ``step`` (columns of METRIC_SCHEMA) as one immutable part."""
        table = pa.table(rows, schema=METRIC_SCHEMA)  # here: converting Python lists holds the GIL
        path = self.path / "metrics" / f"part-{step:09d}.parquet"
        self._write(lambda: write_atomic(path, lambda f: pq.write_table(table, f)))  # Arrow encodes without the GIL

    def append_table(self, name: str, step: int, table: pa.Table) -> None:
        """Another long table (for example probe histograms), one part per flush like the metrics."""
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise StoreError(f"table name {name!r} must be lower-case letters, digits and _")
        path = self.path / "tables" / f"{name}-{step:09d}.parquet"
        self._write(lambda: write_atomic(path, lambda f: pq.write_table(table, f)))

    def thin_table(self, name: str, keep: int) -> None:
        """Past ``keep`` windows (distinct steps) in table ``name``, thin the older half: every second
        of its windows goes, the newest half stays whole (as ``probe.history`` thins in memory). The
        older parts are merged into one part, written atomically under the newest merged part's name,
        before the others are removed. Inside ``background()`` it runs on the writer thread, after
        every write queued before it."""

        def job():
            parts = [(s, p, read_part(p)) for s, p in self._parts("tables", name)]
            ends = sorted({v for _, _, t in parts for v in t["step"].to_pylist()})
            if len(ends) <= keep:
                return
            last_older = ends[len(ends) // 2 - 1]  # the newest step of the older half: its parts merge
            gone = pa.array(sorted(every_second_older(ends)), type=pa.int64())
            merged = [(p, t) for s, p, t in parts if s <= last_older]
            kept = pa.concat_tables([t for _, t in merged])
            kept = kept.filter(pc.invert(pc.is_in(kept["step"].cast(pa.int64()), value_set=gone)))
            write_atomic(merged[-1][0], lambda f: pq.write_table(kept, f))
            for p, _ in merged[:-1]:
                p.unlink(missing_ok=True)

        self._write(job)

    def _parts(self, folder: str, kind: str | None = None) -> list[tuple[int, Path]]:
        """The parts in ``folder``, by step; a linked folder or part is not the run's and is left out
        (``damage`` names it), so it is never read, overwritten or deleted."""
        where = self.path / folder
        if where.is_symlink() or not where.is_dir():
            return []
        found = []
        for p in where.iterdir():
            m = PART.match(p.name)
            if m and (kind is None or m["kind"] == kind) and not p.is_symlink():
                found.append((int(m["step"]), p))
        return sorted(found)

    def metrics(self) -> pa.Table:
        """All metric rows, in step order (an empty table for a run that logged nothing yet)."""
        return queries.metrics([p for _, p in self._parts("metrics")])

    def table(self, name: str) -> pa.Table | None:
        """Table ``name``'s parts, in step order; every part must have the first one's columns (and a
        ``step`` column), else StoreError names the part that differs."""
        return queries.table([p for _, p in self._parts("tables", name)])

    def final(self) -> dict:
        """The run's status and its last epoch-level numbers (from status.json)."""
        return queries.final(self.name, self.status())

    def epochs(self) -> list[dict]:
        """One row per finished epoch (1-based): its last step and the train and test loss and accuracy."""
        return queries.epochs(self.metrics())

    def series(self, name: str, split: str = "train") -> tuple[list[int], list[float]]:
        """(steps, values) of one metric."""
        return queries.series(self.metrics(), name, split)

    # --- checkpoints ---

    def save_checkpoint(self, step: int, state: dict, keep: int = 2) -> None:
        """Write ``state`` atomically as checkpoint ``step``; keep the newest ``keep`` ones. In the
        background, ``state`` must not change after the call: hand over a snapshot (copied tensors)."""
        def job():
            buffer = io.BytesIO()  # serialised first, so that a failed write is an OSError, not torch's RuntimeError
            torch.save(state, buffer)
            write_atomic(self.path / "checkpoints" / f"step-{step:09d}.pt", lambda f: f.write(buffer.getbuffer()))
            for _, old in self._parts("checkpoints", "step")[:-keep]:
                old.unlink(missing_ok=True)

        self._write(job)

    def read_checkpoint(self, path: Path, device: torch.device | str = "cpu") -> dict:
        """A checkpoint's state, read with ``weights_only=True``: tensors, numbers, strings and
        containers only, so a checkpoint from elsewhere cannot run code. StoreError naming the file
        for anything else (a damaged file, a pickle that asks for more)."""
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - zip, pickle and torch errors all mean "not usable"
            raise StoreError(f"checkpoint {str(path)!r} cannot be read safely: {first_line(err)}") from None
        if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "batch"} <= set(state):
            raise StoreError(f"checkpoint {str(path)!r} is not a gradientflow checkpoint")
        return state

    def last_good_checkpoint(self, device: torch.device | str = "cpu",
                             fits: Callable[[dict, int], str | None] | None = None) -> tuple[int, dict]:
        """The newest checkpoint that reads (``read_checkpoint``) and fits (``fits(state, step)`` returns
        None, else why not), as (step, state). A damaged or foreign newer one is renamed
        ``*.pt.damaged`` (kept, no longer a checkpoint), so the run goes on from the one before it;
        StoreError naming each refused file and why if none will do."""
        errors, damaged = [], []
        for step, path in reversed(self._parts("checkpoints", "step")):
            try:
                state = self.read_checkpoint(path, device)
            except StoreError as err:
                errors.append(str(err))
                damaged.append(path)
                continue
            try:
                why = fits(state, step) if fits is not None else None
            except Exception as err:  # noqa: BLE001 - a foreign state can break any check in its own way
                why = first_line(err)
            if why is not None:
                errors.append(f"checkpoint {str(path)!r} does not fit this run: {why}")
                damaged.append(path)
                continue
            for path in damaged:
                path.rename(path.with_name(path.name + ".damaged"))
            return step, state
        raise StoreError("; ".join(errors) or f"{str(self.path)!r} has no checkpoint")

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        parts = self._parts("checkpoints", "step")
        return parts[-1] if parts else None

    def rewind(self, step: int) -> None:
        """Drop what was written after checkpoint ``step`` (an interrupted run's last, unsaved stretch)."""
        for folder in ("metrics", "tables"):
            for s, p in self._parts(folder):
                if s > step:
                    p.unlink()
        for folder in ("", *_FOLDERS):
            where = self.path / folder
            if where.is_dir() and not where.is_symlink():
                for p in where.glob(".*.tmp"):
                    p.unlink(missing_ok=True)  # a link itself is removed, never what it points to


def list_runs(root: str | os.PathLike) -> list[Run]:
    """The runs directly inside ``root`` (or ``root`` itself if it is a run), by name."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{str(root)!r} is not a folder")
    if (root / "config.json").is_file():
        return [Run(root)]
    return [Run(p) for p in sorted(root.iterdir()) if (p / "config.json").is_file()]
