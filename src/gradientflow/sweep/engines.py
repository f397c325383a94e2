"""Where a sweep's cells train: ``local`` (this machine: one process, or a pool of worker processes)
or ``ray`` (a Ray cluster: one started here by ``ray.init``, or an existing one at ``--address``).

An engine takes the cells still to train as (name, config, folder) and calls ``ended(name, row)``
in this process as each one ends; the workers write the cells' runs straight into their folders,
so on a cluster the sweep's folder must be one that every node sees at the same path (NFS, a
shared volume). Every cell trains with one torch thread on either engine, so the same spec gives
the same numbers, bit for bit, whichever engine and however many workers train it.
"""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from .cell import run_cell

ENGINES = ("local", "ray")
Task = tuple[str, dict, str]  # a cell's name, its config (a dict) and its run folder
Ended = Callable[[str, dict], None]


class Local:
    """This machine: the cells one after another in this process (``workers=1``), or on a pool of
    ``workers`` spawned processes (no forked torch state in them)."""

    def __init__(self, workers: int | None = None):
        self.workers = 1 if workers is None else workers

    def map(self, tasks: list[Task], ended: Ended) -> None:
        if self.workers == 1 or len(tasks) <= 1:
            for name, config, folder in tasks:
                ended(name, run_cell(config, folder))
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)), mp_context=context) as pool:
            futures = {pool.submit(run_cell, config, folder): name for name, config, folder in tasks}
            for future in as_completed(futures):
                ended(futures[future], future.result())

    def close(self) -> None:
        pass


class Ray:
    """A Ray cluster: ``address=None`` starts a local one for this sweep (``workers`` CPUs, default
    all of this machine's); an address (``HOST:PORT`` of a running head, ``ray://HOST:PORT`` for
    Ray Client, or ``auto``) joins an existing one, after checking that it answers (Ray itself would
    retry for minutes). Each cell is a task that asks for one CPU; with ``workers`` at most that
    many are in flight. Nothing is written before the cluster answers."""

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
                ended(flying.pop(ref), self.ray.get(ref))

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
