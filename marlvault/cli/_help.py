"""``--help`` that ends with a table of the command's config keys (type, default, meaning).

The table is built only when help is asked for, so importing the CLI does not import JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand

OVERRIDE_RULES = (
    "Keys (KEY=VALUE; integers accept 2e6, tuples 128,128, booleans true/false, optionals none):"
)


def keys_help_command(keys_text: Callable[[], str]) -> type[TyperCommand]:
    """A command class whose ``--help`` ends with ``keys_text()`` printed as is (no rewrap)."""

    class KeysHelpCommand(TyperCommand):
        def format_help(self, ctx: Any, formatter: Any) -> None:
            super().format_help(ctx, formatter)
            typer.echo(f"\n{OVERRIDE_RULES}\n{keys_text()}\n")

    return KeysHelpCommand
