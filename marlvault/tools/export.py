"""Export a vault for code that does not read marlvault vaults directly.

Layouts (``layout=``):

- ``"og-marl"``: one row (``B == 1``) holding the *complete* episodes of the source laid end to
  end, with no padding. The order is the episode table's: by the step an episode ends at, then
  by source row (the order one streaming pass over the source finds them in, so the export needs
  one pass and memory for one chunk plus the open episode of each source row). Every episode is
  copied exactly, all keys, so its last step keeps the flag it ended with (``terminals`` or
  ``truncations``). Incomplete episodes (no end flag before the row's valid end) are dropped and
  counted. This is the layout OG-MARL's code assumes: it reads ``B == 1`` and treats every step
  as data.

The destination is a new vault (``.../NAME.vlt/UID``). Its ``metadata["marlvault"]`` keeps the
source's section (without the engine's own keys and ``row_lengths``) and adds ``provenance``:
tool, source, layout, episodes and transitions exported, incomplete episodes dropped.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from marlvault.errors import ConfigError, VaultExistsError
from marlvault.tools._common import derived_metadata, open_vault, step_specs
from marlvault.tools.index import EpisodeTable, episode_table
from marlvault.tools.subsample import copy_episodes
from marlvault.tools.writer import PackedWriter, create_like

LAYOUTS = ("og-marl",)
"""Layouts :func:`export` writes."""


def export(src: Any, dst: str, layout: str = "og-marl", progress: bool = False) -> dict[str, Any]:
    """Export vault ``src`` to ``dst`` in ``layout`` (see the module docstring).

    Args:
        src: path/URL of the source vault, or an open vault.
        dst: path/URL of the new vault (must not exist).
        layout: one of :data:`LAYOUTS`.
        progress: show a progress bar on stderr.

    Returns:
        The summary, also stored as ``provenance``: ``episodes`` and ``transitions`` written,
        ``dropped_incomplete`` episodes and their ``dropped_steps``.

    Raises:
        ConfigError: unknown layout.
        VaultExistsError: something already exists at ``dst`` (nothing is touched).
        VaultNotFoundError, NotAVaultError: ``src`` is not a vault.
    """
    if layout not in LAYOUTS:
        raise ConfigError(
            f"export {dst}: --layout expected one of {', '.join(LAYOUTS)}, found {layout!r}; "
            "fix: pass --layout og-marl"
        )
    _refuse_existing(dst)
    with open_vault(src) as v:
        table = episode_table(v, progress=progress)
        prov = _provenance(v, dst, layout, table)
        chosen = table.select(np.flatnonzero(table.complete))
        with create_like(dst, step_specs(v), 1, derived_metadata(v, prov)) as out:
            _write_flat_row(v, chosen, out, progress)
        return prov


def _write_flat_row(v: Any, chosen: EpisodeTable, sink: Any, progress: bool) -> None:
    """Stream the ``chosen`` episodes of ``v`` (table order) end to end into row 0 of ``sink``."""
    writer = PackedWriter(sink, np.array([int(chosen.length.sum())], np.int64))
    copy_episodes(v, chosen, np.zeros(chosen.num, np.int64), writer, progress, label="export")
    writer.finish()


def _provenance(v: Any, dst: str, layout: str, table: EpisodeTable) -> dict[str, Any]:
    done = table.complete
    return {
        "tool": "export", "sources": [str(v.path)], "destination": str(dst), "layout": layout,
        "order": "by end step, then source row",
        "episodes": int(done.sum()), "transitions": int(table.length[done].sum()),
        "terminated": int(table.terminated[done].sum()),
        "truncated": int(table.truncated[done].sum()),
        "dropped_incomplete": int((~done).sum()), "dropped_steps": int(table.length[~done].sum()),
    }


def _refuse_existing(dst: str) -> None:
    """Raise :class:`VaultExistsError` if a local ``dst`` exists (URLs: the engine checks)."""
    if "://" in str(dst) or not os.path.lexists(dst):
        return
    kind = "a folder" if os.path.isdir(dst) else "a file"
    raise VaultExistsError(
        f"{dst}: expected nothing at the export destination, found {kind}; fix: pick a new "
        "path or delete the old export first (export never overwrites)"
    )
