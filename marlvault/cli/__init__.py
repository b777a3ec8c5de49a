"""The ``marlvault`` command: a thin layer over library functions.

Each group lives in its own module and is attached here; every :class:`MarlvaultError` becomes a
one-line message on stderr and the error class's own exit code.
"""

from __future__ import annotations

import os
import sys

import typer

from marlvault.cli._errors import ErrorsGroup, install_scrubbing_excepthook, report
from marlvault.errors import MarlvaultError

app = typer.Typer(
    help="Record multi-agent RL experience into vaults and train offline MARL from them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=ErrorsGroup,
)


def _register() -> None:
    """Attach every command group (each imports its library code only when a command runs)."""
    import importlib

    for module in ("train", "envs", "vault", "record", "offline", "dataset", "launch"):
        importlib.import_module(f"marlvault.cli.{module}").register(app)


_register()


def _click_exception() -> type[Exception]:
    """The ``ClickException`` class of the click that typer runs on.

    typer ≥ 0.29 carries its own copy of click, whose exceptions are not ``click``'s; found
    through typer's public ``BadParameter`` so that both layouts work.
    """
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _exit_now(code: int) -> None:
    """Exit without interpreter teardown, which can wait minutes for an in-flight storage request
    (tensorstore joins its I/O threads). Safe: vault commits are atomic, so stopping here is no
    worse than the SIGKILL the vault is built to survive."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script.

    Exit codes: 0 success, 2 usage error (click's one-line usage message), 130 Ctrl-C, and each
    :class:`MarlvaultError` subclass its own code (``marlvault.errors``).
    """
    install_scrubbing_excepthook()
    try:
        # With standalone_mode=False click *returns* the code of a ``typer.Exit`` instead of
        # raising it; pass it on.
        rc = app(args=argv, standalone_mode=False, prog_name="marlvault")
        sys.exit(rc if isinstance(rc, int) else 0)
    except MarlvaultError as err:
        report(err)
        sys.exit(err.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C that no command handled itself
        typer.echo("aborted", err=True)
        _exit_now(130)
    except _click_exception() as exc:  # usage errors: unknown command, flag or value
        exc.show()
        sys.exit(exc.exit_code)

if __name__ == "__main__":
    main()
