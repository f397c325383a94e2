"""The ``gradientflow`` click group and the one way a bad input leaves: one line, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from pydantic import ValidationError

EXIT_BAD_INPUT = 2


class BadInput(click.ClickException):
    """A user error: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT


class _OneLineErrors(click.Group):
    """A click group whose errors, click's own parse errors included, are one line on stderr."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.ClickException as err:
            click.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except OSError as err:  # the machine's fault, not the input's: a full disk, a file-size limit
            where = f": {err.filename!r}" if err.filename else ""
            click.echo(f"error: {err.strerror or err}{where}", err=True)
            sys.exit(1)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gradientflow")
def main() -> None:
    """gradientflow: see and measure why a deep network trains or does not."""


@contextmanager
def bad_input() -> Iterator[None]:
    """The edge: a config that does not validate, or a library ValueError (bad data, a run that is
    not one, no critical point, ...), becomes ``BadInput`` with its one-line message."""
    from ..config import describe_error

    try:
        yield
    except ValidationError as err:
        raise BadInput(describe_error(err)) from None
    except ValueError as err:
        raise BadInput(str(err)) from None


def output_folder(path: str) -> Path:
    """The folder to write into: created if missing, but its parent must exist (``folders.output_folder``)."""
    from ..folders import output_folder as folder

    with bad_input():
        return folder(path)


def open_runs(paths) -> list:
    """The stored runs at ``paths`` (``store.Run``); a path that is not a run is a bad input."""
    from ..store import Run

    with bad_input():
        return [Run(p) for p in paths]
