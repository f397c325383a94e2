"""The command line: thin commands that parse, build a typed config, make one library call and render.

Each module holds the commands of one topic; importing it registers them on ``main``. Every bad
input ends as one line ``error: ...`` on stderr and exit code 2 (``app.bad_input``).
"""

from . import activations, inspect_run, lab, propagate, reproduce, runs, sweep, theory, train  # noqa: F401  (registers commands)
from .app import EXIT_BAD_INPUT, BadInput, main

__all__ = ["BadInput", "EXIT_BAD_INPUT", "main", "run"]


def run() -> None:
    """Console-script entry point."""
    main()
