"""The run's lock: one process at a time trains into a run (``Run.writing()``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError


class RunBusy(StoreError):
    """The run is being written by another live process."""


@contextmanager
def hold(lock: Path, refuse_links: Callable[[], None]) -> Iterator[None]:
    """Hold the lock file ``lock`` (``RUN/.lock``) for the block, after ``refuse_links()`` has checked
    that the run's files are its own. The lock is an advisory ``flock``, which the kernel releases
    when the holder dies, even by ``kill -9``; the holder's pid is written into the file, so that a
    refused second process can name it (RunBusy). Not POSIX: no lock, and no check."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    refuse_links()
    try:  # O_NOFOLLOW: a link planted after the check above is refused too, never truncated
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise StoreError(f"cannot lock {str(lock)!r}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunBusy(f"{str(lock.parent)!r} is being written by another process (pid {holder}); "
                          "wait for it to end or stop it, then resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
