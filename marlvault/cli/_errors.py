"""One place that turns a :class:`MarlvaultError` into a one-line message and its exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from marlvault.errors import MarlvaultError


def report(err: MarlvaultError) -> None:
    """Prints ``error: <message>`` on stderr."""
    typer.echo(f"error: {err}", err=True)


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
