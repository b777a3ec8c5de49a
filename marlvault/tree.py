"""The one ``flatten`` / ``unflatten`` between pytrees and flat ``{"a.b": leaf}`` dicts.

Vault leaves, schema keys and tool views all address leaves by dotted paths
(``"infos.legals"``); the nested form is plain dicts. Every module converts through these two
functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from marlvault.errors import SchemaMismatchError


def _name(entry: Any) -> str:
    """The name of one path entry (dict key, NamedTuple / dataclass field, sequence index)."""
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def flatten(tree: Any) -> dict[str, Any]:
    """Flattens any pytree (nested dicts, NamedTuples, dataclasses) into ``{"a.b": leaf}``.

    Raises:
        SchemaMismatchError: a key is empty or contains ``"."`` (it could not be read back).
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out: dict[str, Any] = {}
    for path, leaf in leaves:
        names = [_name(p) for p in path]
        if not names or any("." in n or not n for n in names):
            raise SchemaMismatchError(
                f"leaf path {names!r}: expected non-empty names without '.', found otherwise; "
                "fix: rename the keys of the experience pytree"
            )
        out[".".join(names)] = leaf
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten` into nested dicts: ``{"infos.state": x}`` → ``{"infos": {"state": x}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
