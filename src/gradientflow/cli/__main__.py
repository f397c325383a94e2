"""``python -m gradientflow.cli``: the same as the ``gradientflow`` command."""

from . import run

run()
