"""The run store: one directory per run, written so that a kill at any moment leaves it readable.

::

    RUN/
      config.json                  what defines the run (written once, at creation)
      status.json                  running | finished | diverged | interrupted, with the summary
      metrics/part-<step>.parquet  long format: step, epoch, split, name, value
      tables/<name>-<step>.parquet other long tables (probe histograms, ...)
      checkpoints/step-<step>.pt   model, optimiser, scheduler and loop state
      .lock                        held (``flock``) by the one process training into the run

Every file is written to a temporary name in the same folder, flushed to disk and renamed into
place (``os.replace`` is atomic), so readers see a whole file or none. Inside ``Run.background()``
the writes run in order on one background thread (a bounded queue), off the training step's path. Metric parts are named by
the step of the checkpoint they precede; resuming from checkpoint ``s`` drops parts after ``s``,
so a resumed run holds each step's rows exactly once. Queries across runs (``sql``) go through DuckDB.

No symbolic link inside a run is followed: a run whose files or folders are links (``.lock``,
``checkpoints``, a part, ...) is refused for writing and listed as damaged, its linked parts are
never read, and nothing is deleted outside the run's own folders. A run received from elsewhere or
kept on a shared volume cannot make a training process write, truncate or delete someone else's file.
"""

from __future__ import annotations

import errno
import io
import json
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from .jsontext import dumps
from .thinning import every_second_older

METRIC_SCHEMA = pa.schema([("step", pa.int64()), ("epoch", pa.int32()), ("split", pa.string()),
                           ("name", pa.string()), ("value", pa.float64())])
_PART = re.compile(r"^(?P<kind>.+)-(?P<step>\d{9})\.(parquet|pt)$")
_FOLDERS = ("metrics", "tables", "checkpoints")
_FILES = ("config.json", "status.json", ".lock")


class StoreError(ValueError):
    """A path that is not a usable run; the message is one line."""


class RunBusy(StoreError):
    """The run is being written by another live process."""


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: ``os.umask`` is process-wide, and the writer thread writes too


def write_atomic(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename onto it.
    The file gets the mode a plain ``open`` would give (0666 less the umask), not the temporary
    file's private 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):  # a full disk, a file-size limit: name the file that was being written
            raise OSError(err.errno, f"cannot write {str(path)!r}: {err.strerror or _first_line(err)}") from None
        raise


def output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """The folder to write figures or a report into: created if missing, but its parent must exist.
    ValueError, naming ``option``, for a path that is a file or whose parent is missing."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {str(path)!r} exists and is not a folder")
    if not folder.exists():
        if not folder.parent.exists():
            raise ValueError(f"{option} {str(path)!r}: parent folder {str(folder.parent)!r} does not exist")
        folder.mkdir()
    return folder


def write_json(path: Path, obj) -> None:
    """``obj`` as standard JSON (``jsontext``: NaN as null, infinities as "inf" and "-inf"), atomically."""
    text = dumps(obj, indent=2, default=str) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


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


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def _same_schema(path: Path, found: pa.Schema, schema: pa.Schema) -> None:
    """StoreError naming the part when its columns are not ``schema``'s (a part written by something
    else parses, and Arrow would read its missing columns as nulls)."""
    if not found.equals(schema, check_metadata=False):
        raise StoreError(f"{str(path)!r} is damaged: its columns are ({_columns(found)}), not ({_columns(schema)})")


def _footer_schema(path: Path) -> pa.Schema:
    """A part's schema, from its footer alone; StoreError naming the file when it does not read."""
    try:
        return pq.read_schema(path)
    except Exception as err:  # noqa: BLE001 - Arrow raises several types for a bad file
        raise StoreError(f"{str(path)!r} is damaged: {_first_line(err)}") from None


def _read_part(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """One Parquet part, read once and checked against ``schema`` when given; StoreError naming the
    file when it is truncated, corrupt or of another schema."""
    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - Arrow raises several types for a bad file
        raise StoreError(f"{str(path)!r} is damaged: {_first_line(err)}") from None
    if schema is not None:
        _same_schema(path, table.schema, schema)
    return table


def _table_schema(path: Path, schema: pa.Schema) -> pa.Schema:
    """A table's first part's schema, which must have an integer ``step`` column (what thinning and
    the readers sort and select by)."""
    if "step" not in schema.names or not pa.types.is_integer(schema.field("step").type):
        raise StoreError(f"{str(path)!r} is damaged: no integer step column ({_columns(schema)})")
    return schema


def _same_columns(path: Path, found: pa.Schema, first: pa.Schema) -> None:
    """A later part of a table has the first part's columns, of types that combine (a column of
    nulls in one part takes the other part's type); StoreError naming the part otherwise."""
    try:
        if found.names != first.names:
            raise ValueError
        pa.unify_schemas([first, found])
    except (ValueError, pa.ArrowInvalid, pa.ArrowTypeError):
        raise StoreError(f"{str(path)!r} is damaged: its columns are ({_columns(found)}), "
                         f"not those of the table's first part ({_columns(first)})") from None


class _Writer:
    """One thread that performs queued writes in order. The queue is bounded, so a producer faster
    than the disk waits instead of piling snapshots up in memory. The first error stops the writing
    (later jobs are skipped: a part after a missing one would leave a gap) and is raised again in the
    producer's thread at its next ``submit`` or at ``close``."""

    def __init__(self, depth: int = 4):
        self.jobs: queue.Queue = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="gradientflow-store", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    job()
                except BaseException as err:  # noqa: BLE001 - handed to the producer's thread
                    self.error = err

    def _raise(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self.jobs.put(job)

    def close(self, *, raise_error: bool = True) -> None:
        """Wait for every queued write; then raise the first error, if any and if asked."""
        self.jobs.put(None)
        self.thread.join()
        if raise_error:
            self._raise()


class Run:
    """A run directory. ``Run.create`` makes a new one; ``Run(path)`` opens an existing one."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise StoreError(f"{str(self.path)!r} is not a run (no config.json)")
        self._writer: _Writer | None = None
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
        self._writer = writer = _Writer()
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
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            fcntl = None
        if fcntl is None or self._locked:  # re-entered by the holder
            yield self
            return
        self._refuse_links()
        try:  # O_NOFOLLOW: a link planted after the check above is refused too, never truncated
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise StoreError(f"cannot lock {str(self.path / '.lock')!r}: {err.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise RunBusy(f"{str(self.path)!r} is being written by another process (pid {holder}); "
                              "wait for it to end or stop it, then resume") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self._locked = True
            yield self
        finally:
            self._locked = False
            os.close(fd)  # closing releases the lock

    def _write(self, job: Callable[[], None]) -> None:
        if self._writer is not None:
            self._writer.submit(job)
        else:
            job()

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict) -> "Run":
        """A new run directory; refuses a folder that already has content, so nothing is overwritten."""
        path = Path(path)
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
            tmp.chmod(0o777 & ~_UMASK)  # mkdtemp's folder is private
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
            raise StoreError(f"{str(path)!r} is damaged: {_first_line(err)}") from None
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
                kind = _PART.match(part.name)["kind"]
                try:
                    found = _footer_schema(part)
                    if folder == "metrics":
                        _same_schema(part, found, METRIC_SCHEMA)
                    elif kind in expected:
                        _same_columns(part, found, expected[kind])
                    else:
                        expected[kind] = _table_schema(part, found)
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
            parts = [(s, p, _read_part(p)) for s, p in self._parts("tables", name)]
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
            m = _PART.match(p.name)
            if m and (kind is None or m["kind"] == kind) and not p.is_symlink():
                found.append((int(m["step"]), p))
        return sorted(found)

    def metrics(self) -> pa.Table:
        """All metric rows, in step order (an empty table for a run that logged nothing yet)."""
        parts = [_read_part(p, METRIC_SCHEMA) for _, p in self._parts("metrics")]
        return pa.concat_tables(parts) if parts else METRIC_SCHEMA.empty_table()

    def table(self, name: str) -> pa.Table | None:
        """Table ``name``'s parts, in step order; every part must have the first one's columns (and a
        ``step`` column), else StoreError names the part that differs."""
        parts = [(p, _read_part(p)) for _, p in self._parts("tables", name)]
        if not parts:
            return None
        first = _table_schema(parts[0][0], parts[0][1].schema)
        for p, t in parts[1:]:
            _same_columns(p, t.schema, first)
        return pa.concat_tables([t for _, t in parts], promote_options="default")

    def final(self) -> dict:
        """The run's status and its last epoch-level numbers (from status.json)."""
        status = self.status()
        return {"run": self.name, **{k: status.get(k) for k in ("status", "steps", "test_accuracy", "test_loss",
                                                                  "train_loss", "seconds")}}

    def epochs(self) -> list[dict]:
        """One row per finished epoch (1-based): its last step and the train and test loss and accuracy."""
        long = self.metrics().to_pandas()
        long = long[long["split"].isin(["train_epoch", "test"])]
        columns = ["train_loss", "train_accuracy", "test_loss", "test_accuracy"]
        if long.empty:
            return []
        long = long.assign(column=long["split"].str.replace("_epoch", "") + "_" + long["name"])
        wide = long.pivot_table(index="epoch", columns="column", values="value", aggfunc="max")
        wide = wide.reindex(columns=columns).astype(object).where(wide.notna(), None)
        steps = long.groupby("epoch")["step"].max()
        return [{"epoch": int(e) + 1, "step": int(steps[e]), **wide.loc[e].to_dict()} for e in wide.index]

    def series(self, name: str, split: str = "train") -> tuple[list[int], list[float]]:
        """(steps, values) of one metric."""
        t = self.metrics().filter((pc.field("name") == name) & (pc.field("split") == split))
        return t["step"].to_pylist(), t["value"].to_pylist()

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
            raise StoreError(f"checkpoint {str(path)!r} cannot be read safely: {_first_line(err)}") from None
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
                why = _first_line(err)
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
