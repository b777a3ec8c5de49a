"""One place that turns a :class:`MarlvaultError` into a one-line message and its exit code.

The root command's group class (:class:`ErrorsGroup`) wraps the invocation of every subcommand
of every group, so no command needs its own handler, and ``CliRunner`` tests see the same exit
codes as the console script.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import typer
from typer.core import TyperGroup

from marlvault.errors import MarlvaultError, scrub


def report(err: MarlvaultError) -> None:
    """Prints ``error: <message>`` on stderr."""
    typer.echo(scrub(f"error: {err}"), err=True)


def _scrubbed_excepthook(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    sys.stderr.write(scrub("".join(traceback.format_exception(kind, value, tb))))


def install_scrubbing_excepthook() -> None:
    """Unexpected exceptions (bugs) still print a traceback, but with secrets scrubbed."""
    sys.excepthook = _scrubbed_excepthook


@contextmanager
def user_errors() -> Iterator[None]:
    """Inside a command: report a MarlvaultError and exit with its code.

    Raises ``SystemExit`` rather than ``typer.Exit`` so that the code also survives click's
    ``standalone_mode=False`` (the root ``main``) and ``CliRunner``.
    """
    try:
        yield
    except MarlvaultError as err:
        report(err)
        raise SystemExit(err.exit_code) from None


class ErrorsGroup(TyperGroup):
    """The root group: every :class:`MarlvaultError` raised below it becomes one line + its code."""

    def invoke(self, ctx: typer.Context) -> object:
        with user_errors():
            return super().invoke(ctx)
