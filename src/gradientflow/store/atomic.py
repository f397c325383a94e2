"""Atomic file writes: a temporary file beside the target, flushed to disk and renamed into place
(``os.replace`` is atomic), so readers see a whole file or none."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..jsontext import dumps


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
            raise OSError(err.errno, f"cannot write {str(path)!r}: {err.strerror or first_line(err)}") from None
        raise


def write_json(path: Path, obj) -> None:
    """``obj`` as standard JSON (``jsontext``: NaN as null, infinities as "inf" and "-inf"), atomically."""
    text = dumps(obj, indent=2, default=str) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def first_line(err: BaseException) -> str:
    """An error's message for a one-line StoreError: its first line (at most 200 characters), or its
    type's name when it has none."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]
