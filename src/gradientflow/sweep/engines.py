"""Where a sweep's cells train: ``local`` (this machine: one process, or a pool of worker processes)
or ``ray`` (a Ray cluster: one started here by ``ray.init``, or an existing one at ``--address``).

An engine takes the cells still to train as (name, config, folder) and calls ``ended(name, row)``
in this process as each one ends; the workers write the cells' runs straight into their folders,
so on a cluster the sweep's folder must be one that every node sees at the same path (NFS, a
shared volume). Every cell trains with one torch thread on either engine, so the same spec gives
the same numbers, bit for bit, whichever engine and however many workers train it.

The local pool's guarantees under kills:

- a worker dies with the sweep's process, even when that one is killed by ``kill -9`` and can clean
  nothing up: the kernel's parent-death signal (SIGKILL, Linux) and, everywhere, a thread that
  watches the parent's pid. No orphan goes on training, or holds a cell's run lock, after the sweep;
- a worker lost mid-cell (the out-of-memory killer, a ``kill``) fails that cell alone, with the
  message ``worker lost: killed by signal 9 (SIGKILL)`` (or the exit code), and a fresh worker
  trains the rest. Each worker is handed one cell at a time over its own pipe, so the pool always
  knows which cell a dead worker held; the other workers' cells are not disturbed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait

from .cell import run_cell

ENGINES = ("local", "ray")
Task = tuple[str, dict, str]  # a cell's name, its config (a dict) and its run folder
Ended = Callable[[str, dict], None]
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_SECONDS = 0.5  # how often a worker looks for its parent where the kernel does not tell it


class Local:
    """This machine: the cells one after another in this process (``workers=1``, or a single cell to
    train), or on a pool of ``workers`` spawned processes (no forked torch state in them). Only the
    pool outlives a lost cell: in this process, a kill of the cell is the sweep's own (rerun it)."""

    def __init__(self, workers: int | None = None):
        self.workers = 1 if workers is None else workers

    def map(self, tasks: list[Task], ended: Ended) -> None:
        if self.workers == 1 or len(tasks) <= 1:
            for name, config, folder in tasks:
                ended(name, run_cell(config, folder))
            return
        _pool_map(tasks, ended, min(self.workers, len(tasks)))

    def close(self) -> None:
        pass


def _pool_map(tasks: list[Task], ended: Ended, size: int) -> None:
    """The tasks on ``size`` worker processes, one cell per worker at a time; a worker that dies
    fails the cell it held (``_Worker.collect``) and is replaced while cells remain. A normal end lets
    the idle workers exit; an error here (Ctrl-C, a full disk in ``ended``) kills them, and their
    cells resume from their checkpoints on the next run."""
    context = multiprocessing.get_context("spawn")
    waiting, workers = list(reversed(tasks)), []
    try:
        while waiting or any(w.task for w in workers):
            while waiting and len(workers) < size:
                workers.append(_Worker(context))
            for worker in workers:
                if worker.task is None and waiting:
                    worker.give(waiting.pop())
            busy = [w for w in workers if w.task]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    ended(*worker.collect())
                    if not worker.process.is_alive():  # lost: a fresh one takes the next cell
                        workers.remove(worker)
                        worker.stop()
    finally:
        for worker in workers:
            worker.stop()


class _Worker:
    """One spawned process that trains the cells handed to it, one at a time, over its own pipe."""

    def __init__(self, context):
        self.conn, theirs = context.Pipe()
        # daemon: multiprocessing ends it if this process exits without stopping it
        self.process = context.Process(target=_serve, args=(theirs, os.getpid()), daemon=True,
                                       name="gradientflow-sweep-worker")
        self.process.start()
        theirs.close()
        self.task: Task | None = None

    def give(self, task: Task) -> None:
        self.task = task
        try:
            self.conn.send(task[1:])
        except OSError:  # already dead: collect() records the cell as lost
            pass

    def collect(self) -> tuple[str, dict]:
        """The cell's name and its row: the one the worker sent or, if it died first, a failed row
        that says how it died."""
        name, self.task = self.task[0], None
        try:
            if self.conn.poll():  # a row sent just before dying still counts
                return name, self.conn.recv()
        except (EOFError, OSError):
            pass
        self.process.join()
        return name, {"status": "failed", "message": f"worker lost: {_death(self.process.exitcode)}"}

    def stop(self) -> None:
        """Let an idle worker exit; kill one still in a cell (the sweep itself is ending on an error)."""
        if self.task is None and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _death(exitcode: int | None) -> str:
    """How a worker process ended, in words: ``killed by signal 9 (SIGKILL)``, ``exit code 1``."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _serve(conn, parent: int) -> None:
    """A worker's life: cells from ``conn`` until it is told to stop (None) or the pipe closes."""
    _die_with_parent(parent)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(run_cell(*task))


def _die_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, however it dies: a ``kill -9``'d parent cleans nothing
    up, so the worker must notice by itself. On Linux the kernel sends SIGKILL (``prctl`` with
    PR_SET_PDEATHSIG; it fires when the thread that started the worker ends, which is the thread
    that waits on the pool for as long as the worker lives). A thread watching ``os.getppid()``
    covers the systems without it."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watching thread still ends it
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="gradientflow-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is handed to init (or a subreaper): its parent pid changes
        time.sleep(WATCH_SECONDS)
    os._exit(1)


class Ray:
    """A Ray cluster: ``address=None`` starts a local one for this sweep (``workers`` CPUs, default
    all of this machine's); an address (``HOST:PORT`` of a running head, ``ray://HOST:PORT`` for
    Ray Client, or ``auto``) joins an existing one, after checking that it answers (Ray itself would
    retry for minutes). Each cell is a task that asks for one CPU; with ``workers`` at most that
    many are in flight. Nothing is written before the cluster answers. A task whose worker is lost
    (killed, out of memory, its node gone) fails its cell alone: ``worker lost:`` and Ray's error."""

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise ValueError("--engine ray needs Ray: pip install 'gradientflow[ray]'") from None
        if address is not None and address != "auto":
            _check_answers(address)
        self.ray, self.workers = ray, workers
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        try:
            if address is None:
                ray.init(num_cpus=workers, **options)
            else:
                ray.init(address=address, **options)
        except ConnectionError as err:
            raise ValueError(f"--address {address!r}: no Ray cluster let this sweep in ({str(err).splitlines()[0]}; a "
                             f"cluster with token authentication needs RAY_AUTH_MODE=token and its token here)") from None
        self.task = ray.remote(num_cpus=1, max_retries=0)(run_cell)

    def map(self, tasks: list[Task], ended: Ended) -> None:
        limit = self.workers or len(tasks)
        waiting, flying = list(reversed(tasks)), {}
        while waiting or flying:
            while waiting and len(flying) < limit:
                name, config, folder = waiting.pop()
                flying[self.task.remote(config, folder)] = name
            done, _ = self.ray.wait(list(flying), num_returns=1)
            for ref in done:
                ended(flying.pop(ref), self._row(ref))

    def _row(self, ref) -> dict:
        """A task's row; a failed row when its worker was lost (killed, out of memory, its node gone):
        ``run_cell`` itself never raises."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            lines = str(err).strip().splitlines() or [type(err).__name__]
            return {"status": "failed", "message": f"worker lost: {type(err).__name__}: {lines[0]}"}

    def close(self) -> None:
        self.ray.shutdown()  # stops the cluster this sweep started; only disconnects from another one


def _check_answers(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to ``[ray://]HOST:PORT``, or a ValueError naming the address."""
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"--address {address!r} does not answer ({err.strerror or err}); "
                         f"start the head with 'ray start --head' or give its address") from None


def make(engine: str = "local", *, workers: int | None = None, address: str | None = None) -> Local | Ray:
    """The engine by name; ValueError (one line) for an unknown one, bad workers or an address that
    does not answer."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}; expected one of: {', '.join(ENGINES)}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 256):
        raise ValueError(f"workers={workers!r} must be an integer from 1 to 256")
    if address is not None and engine != "ray":
        raise ValueError(f"--address {address!r} is read only by --engine ray")
    return Local(workers) if engine == "local" else Ray(workers, address)
