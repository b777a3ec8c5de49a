"""The episode index of one open vault: loaded from storage, extended in memory, stored on commit.

Storage (see ``docs/FORMAT.md``), both float64 zarr arrays in the vault's OCDBT database::

    __marlvault__/episodes         (CAPACITY, 6)  finished episodes, columns format.EPISODE_COLUMNS
    __marlvault__/episode_cursor   (B + 1, 2)     [num_episodes, steps], then per row
                                                  [open episode start, its return so far]

Reading never writes: :meth:`EpisodeLog.catch_up` extends the index over committed steps the
stored one does not cover (flashbax-written vaults have none) in memory only. A writer stores
what is new with the next block, in the same atomic commit as the data
(:meth:`EpisodeLog.pending_writes`). Segmentation itself is :mod:`marlvault.vault.episodes`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from marlvault.errors import VaultError
from marlvault.vault import episodes as ep
from marlvault.vault import format as fmt
from marlvault.vault import guard
from marlvault.vault.store import Store

ReadFlat = Callable[[int, int, list[str]], dict[str, np.ndarray]]
"""``(start, stop, keys) -> {key: [B, stop - start, ...]}`` over committed steps."""

_ARRAYS = [fmt.EPISODES_ARRAY, fmt.CURSOR_ARRAY]
_CATCH_UP_CHUNKS = 16
"""Vault chunks read per step of :meth:`EpisodeLog.catch_up`."""


def create_arrays(store: Store, num_rows: int) -> None:
    """Create the two (empty) episode arrays of a vault with ``num_rows`` rows."""
    zstd = {"id": "zstd", "level": 3}
    cols = len(fmt.EPISODE_COLUMNS)
    store.create_array(
        fmt.EPISODES_ARRAY,
        (fmt.EPISODE_CAPACITY, cols),
        np.dtype(np.float64),
        (fmt.EPISODE_CHUNK, cols),
        zstd,
    )
    store.create_array(
        fmt.CURSOR_ARRAY, (num_rows + 1, 2), np.dtype(np.float64), (num_rows + 1, 2), zstd
    )


class EpisodeLog:
    """Finished episodes ``[K, 6]`` and the cursor of one vault, plus what is not stored yet."""

    def __init__(self, store: Store, num_rows: int, keys: ep.EpisodeKeys, chunk_steps: int):
        self._store = store
        self._num_rows = num_rows
        self._block_steps = chunk_steps * _CATCH_UP_CHUNKS
        self.keys = keys
        self._cursor: ep.EpisodeCursor | None = None
        self._finished = np.zeros((0, len(fmt.EPISODE_COLUMNS)))
        self._stored = 0  # finished rows already in storage

    @property
    def cursor(self) -> ep.EpisodeCursor:
        """The state after the steps covered so far (load first: :meth:`load`)."""
        if self._cursor is None:
            raise VaultError("internal: EpisodeLog.cursor read before EpisodeLog.load()")
        return self._cursor

    def reset(self) -> None:
        """Forget everything loaded (a reader refreshed and may see a newer index)."""
        self._cursor = None
        self._finished = np.zeros((0, len(fmt.EPISODE_COLUMNS)))
        self._stored = 0

    def load(self, committed: int, where: str) -> None:
        """Read the stored index once (an empty one when the vault has none).

        Raises:
            VaultCorruptError: the stored index covers more than ``committed`` steps, or a
                count, bound or row of it is out of range (checked before use).
        """
        if self._cursor is not None:
            return
        cursor = ep.empty_cursor(self._num_rows)
        if self._store.has_arrays(_ARRAYS):
            cursor, self._finished = guard.load_episodes(self._store, self._num_rows, committed)
        self._cursor = cursor
        self._stored = cursor.num_episodes

    def catch_up(self, committed: int, read_flat: ReadFlat, where: str) -> None:
        """Extend the index in memory over committed steps it does not cover yet."""
        self.load(committed, where)
        found = []
        for a in range(self.cursor.steps, committed, self._block_steps):
            b = min(a + self._block_steps, committed)
            data = read_flat(a, b, self.keys.present) if self.keys.present else {}
            rows, self._cursor = ep.scan_flat(self.cursor, a, b - a, data, self.keys)
            found.append(rows)
        if found:
            self._finished = np.concatenate([self._finished, *found])

    def extend(self, start: int, block: dict[str, np.ndarray]) -> None:
        """Scan a block ``{key: [B, n, ...]}`` starting at ``start`` (a writer's new steps)."""
        steps = next(iter(block.values())).shape[1]
        rows, self._cursor = ep.scan_flat(self.cursor, start, steps, block, self.keys)
        if len(rows):
            self._finished = np.concatenate([self._finished, rows])

    def pending_writes(self) -> list[tuple[str, Any, np.ndarray]]:
        """``(array, index, value)`` writes that store the cursor and every unstored episode.

        Creates the episode arrays first when the vault has none (flashbax-written). The caller
        commits them atomically with the data and then calls :meth:`mark_stored`.
        """
        if not self._store.has_arrays(_ARRAYS):
            create_arrays(self._store, self._num_rows)
        writes = [(fmt.CURSOR_ARRAY, slice(None), ep.cursor_to_array(self.cursor))]
        total = len(self._finished)
        if total > self._stored:
            new = self._finished[self._stored :]
            writes.append((fmt.EPISODES_ARRAY, slice(self._stored, total), new))
        return writes

    def mark_stored(self) -> None:
        """Everything returned by :meth:`pending_writes` is committed (or in flight)."""
        self._stored = len(self._finished)

    def index(self) -> np.ndarray:
        """The public index (:data:`marlvault.vault.episodes.EPISODE_DTYPE`), by (row, start)."""
        return ep.make_index(self._finished, self.cursor)
