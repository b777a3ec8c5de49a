"""Episode tables for the tools: one streaming pass over rewards and done flags.

An episode is a run of steps in one row that ends at the first step whose ``terminals`` or
``truncations`` is 1 for any agent (that step belongs to the episode). The steps after a row's
last boundary, up to the row's valid length (``Vault.row_lengths``; padding beyond it is skipped),
form an *incomplete* episode. The return of an episode is the team return used by
evaluation: the sum over its steps of the mean over agents of ``rewards``, accumulated in float64.

Segmentation is the vault's own (:mod:`marlvault.vault.episodes`, the only implementation).
:func:`episode_table` takes the vault's index (``Vault.episodes``: stored for our vaults,
computed in memory for flashbax ones); :func:`scan_episodes` segments the streamed chunks
itself, for per-episode statistics the index does not hold (the range of ``infos.update``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from marlvault.errors import DatasetError
from marlvault.schema import REWARDS, TERMINALS, TRUNCATIONS
from marlvault.tools._common import (
    iter_flat_chunks,
    open_vault,
    row_lengths,
    vault_keys,
)
from marlvault.vault import episodes as ep
from marlvault.vault import format as fmt


class EpisodeTable(NamedTuple):
    """Every episode of a vault, sorted by end step, then row. ``E`` = number of episodes."""

    row: np.ndarray  # [E] int64, row of the episode
    start: np.ndarray  # [E] int64, first time step
    length: np.ndarray  # [E] int64, number of steps
    ret: np.ndarray  # [E] float64, sum over steps of the mean over agents of rewards
    terminated: np.ndarray  # [E] bool, ended by termination
    truncated: np.ndarray  # [E] bool, ended by truncation (and not termination)
    complete: np.ndarray  # [E] bool, has its last step in the vault
    update_min: np.ndarray | None  # [E] int64, smallest update index of its steps, or None
    update_max: np.ndarray | None  # [E] int64, largest update index of its steps, or None

    @property
    def num(self) -> int:
        return int(self.row.shape[0])

    def select(self, mask_or_idx: np.ndarray) -> EpisodeTable:
        """The sub-table of the given boolean mask or index array (order as given)."""
        return EpisodeTable(*(None if f is None else f[mask_or_idx] for f in self))

    @property
    def stop(self) -> np.ndarray:
        """[E] int64, one past the last step."""
        return self.start + self.length


def episode_table(vault: Any, update_key: str | None = None, progress: bool = False) -> EpisodeTable:
    """Compute the episode table of a vault in one streaming pass.

    Args:
        vault: a path/URL or an open vault. Needs ``rewards`` and ``terminals``; ``truncations``
            is used when present (flashbax/OG-MARL vaults may lack it).
        update_key: dotted key of a per-step update index (e.g. ``"infos.update"``) whose
            per-episode min and max are recorded; ``None`` records none.
        progress: show a progress bar on stderr.

    Returns:
        The :class:`EpisodeTable`, complete and incomplete episodes, sorted by (stop, row).

    Raises:
        DatasetError: a required key is missing.
    """
    with open_vault(vault) as v:
        if update_key is None and hasattr(v, "episodes"):
            return from_vault_index(np.asarray(v.episodes))
        return scan_episodes(v, update_key, progress)


def from_vault_index(index: np.ndarray) -> EpisodeTable:
    """Convert the engine's structured index (``marlvault.vault.EPISODE_DTYPE``) to a table."""
    order = np.lexsort((index["row"], index["start"] + index["length"]))
    idx = index[order]
    return EpisodeTable(
        row=idx["row"].astype(np.int64), start=idx["start"].astype(np.int64),
        length=idx["length"].astype(np.int64), ret=idx["return"].astype(np.float64),
        terminated=idx["terminated"].astype(bool), truncated=idx["truncated"].astype(bool),
        complete=idx["complete"].astype(bool), update_min=None, update_max=None,
    )


def scan_episodes(vault: Any, update_key: str | None = None, progress: bool = False) -> EpisodeTable:
    """Compute the episode table by streaming ``rewards``, the done flags and ``update_key``.

    Same arguments and result as :func:`episode_table`, without using the vault's stored index:
    segmentation runs over the streamed chunks (:func:`marlvault.vault.episodes.scan_flat`,
    the vault's own segmentation) and padding is clipped as the vault does.
    """
    with open_vault(vault) as v:
        keys = vault_keys(v)
        for need in (REWARDS, TERMINALS) + ((update_key,) if update_key else ()):
            if need not in keys:
                raise DatasetError(
                    f"{v.path}: expected key {need!r} for the episode table, found keys {keys}; "
                    "use a vault recorded with the OG-MARL schema"
                    + (" or pass the update key the vault holds" if need == update_key else "")
                )
        ep_keys = ep.EpisodeKeys(REWARDS, TERMINALS, TRUNCATIONS if TRUNCATIONS in keys else None)
        read = ep_keys.present + ([update_key] if update_key else [])
        ranges = _UpdateRanges(row_lengths(v)) if update_key else None
        cursor, found = ep.empty_cursor(v.num_rows), [np.zeros((0, len(fmt.EPISODE_COLUMNS)))]
        for start, chunk in iter_flat_chunks(v, read, progress="episodes" if progress else None):
            steps = chunk[REWARDS].shape[1]
            rows, after = ep.scan_flat(cursor, start, steps, chunk, ep_keys)
            if ranges is not None:
                ranges.add(cursor.open_start, rows, start, chunk[update_key])
            cursor = after
            found.append(rows)
        index = v.clip_to_row_lengths(ep.make_index(np.concatenate(found), cursor))
        table = from_vault_index(index)
        return table if ranges is None else ranges.attach(table)


class _UpdateRanges:
    """Smallest and largest update index of every episode, keyed by ``(row, start)``."""

    def __init__(self, lengths: np.ndarray) -> None:
        self.lengths = np.asarray(lengths, np.int64)  # [B] valid steps; the rest is padding
        self.lo: dict[tuple[int, int], int] = {}
        self.hi: dict[tuple[int, int], int] = {}

    def add(self, open_start: np.ndarray, finished: np.ndarray, t0: int, upd: np.ndarray) -> None:
        """Fold in one chunk.

        Args:
            open_start: ``[B]`` start of each row's running episode before the chunk.
            finished: ``[K, 6]`` episodes that ended in the chunk (``scan_flat``'s rows).
            t0: the chunk's first step.
            upd: ``[B, t, ...]`` update index.
        """
        upd = np.asarray(upd).reshape(upd.shape[0], upd.shape[1], -1)
        lo, hi = upd.min(axis=2).astype(np.int64), upd.max(axis=2).astype(np.int64)
        stops = finished[:, 1] + finished[:, 2]
        for b in range(upd.shape[0]):
            n = int(np.clip(self.lengths[b] - t0, 0, upd.shape[1]))  # valid steps of row b here
            if not n:
                continue
            starts = np.concatenate([[open_start[b]], stops[finished[:, 0] == b]]).astype(np.int64)
            starts = starts[(starts - t0 < n)]
            offsets = np.maximum(starts - t0, 0)
            seg_lo = np.minimum.reduceat(lo[b, :n], offsets)
            seg_hi = np.maximum.reduceat(hi[b, :n], offsets)
            for s, a, c in zip(starts.tolist(), seg_lo.tolist(), seg_hi.tolist(), strict=True):
                key = (b, s)
                self.lo[key] = min(self.lo.get(key, a), a)
                self.hi[key] = max(self.hi.get(key, c), c)

    def attach(self, table: EpisodeTable) -> EpisodeTable:
        """The table with ``update_min`` / ``update_max`` filled in."""
        keys = list(zip(table.row.tolist(), table.start.tolist(), strict=True))
        return table._replace(
            update_min=np.array([self.lo[k] for k in keys], np.int64),
            update_max=np.array([self.hi[k] for k in keys], np.int64),
        )
