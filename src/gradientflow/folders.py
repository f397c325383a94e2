"""Where the command line and the reports write their figures and pages."""

from __future__ import annotations

import os
from pathlib import Path


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
