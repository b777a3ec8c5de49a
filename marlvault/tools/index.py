"""Episode tables for the tools: one streaming pass over rewards and done flags.

An episode is a run of steps in one row that ends at the first step whose ``terminals`` or
``truncations`` is 1 for any agent (that step belongs to the episode). The steps after a row's
last boundary, up to the row's valid length (``Vault.row_lengths``; padding beyond it is skipped),
form an *incomplete* episode. The return of an episode is the team return used by
evaluation: the sum over its steps of the mean over agents of ``rewards``, accumulated in float64.

:func:`episode_table` takes the vault's own episode index (``Vault.episodes``, cached on disk
for our vaults, computed once on open for flashbax ones) when it suffices, and otherwise streams
the small keys itself: per-episode statistics the vault index does not hold (the range of
``infos.update``) need that pass. Both give the same episodes (tested).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from marlvault.errors import DatasetError
from marlvault.schema import REWARDS as REWARD_KEY
from marlvault.schema import TERMINALS as TERMINAL_KEY
from marlvault.schema import TRUNCATIONS as TRUNCATION_KEY
from marlvault.tools._common import (
    iter_flat_chunks,
    open_vault,
    row_lengths,
    vault_keys,
)


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


class _RowState:
    """Running sums of the open episode of every row while streaming."""

    def __init__(self, num_rows: int) -> None:
        self.start = np.zeros(num_rows, np.int64)
        self.ret = np.zeros(num_rows, np.float64)
        self.umin = np.full(num_rows, np.iinfo(np.int64).max, np.int64)
        self.umax = np.full(num_rows, np.iinfo(np.int64).min, np.int64)


def _per_step(x: np.ndarray, reduce: str) -> np.ndarray:
    """Reduce every axis after ``[B, t]``: mean (rewards), max (flags) or min/max (update)."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x
    axes = tuple(range(2, x.ndim))
    return getattr(x, reduce)(axis=axes)


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

    Same arguments and result as :func:`episode_table`, without using the vault's own index.
    """
    with open_vault(vault) as v:
        keys = vault_keys(v)
        for need in (REWARD_KEY, TERMINAL_KEY) + ((update_key,) if update_key else ()):
            if need not in keys:
                raise DatasetError(
                    f"{v.path}: expected key {need!r} for the episode table, found keys {keys}; "
                    "use a vault recorded with the OG-MARL schema"
                    + (" or pass the update key the vault holds" if need == update_key else "")
                )
        read = [k for k in (REWARD_KEY, TERMINAL_KEY, TRUNCATION_KEY, update_key) if k in keys]
        acc = _Accumulator(v.num_rows, update_key, row_lengths(v))
        for start, chunk in iter_flat_chunks(v, read, progress="episodes" if progress else None):
            acc.add(start, chunk)
        return acc.finish()


class _Accumulator:
    """Turns a stream of chunks into episode records."""

    def __init__(self, num_rows: int, update_key: str | None, lengths: np.ndarray) -> None:
        self.state = _RowState(num_rows)
        self.update_key = update_key
        self.lengths = np.asarray(lengths, np.int64)  # [B] valid steps; the rest is padding
        self.records: list[tuple[np.ndarray, ...]] = []

    def add(self, t0: int, chunk: dict[str, np.ndarray]) -> None:
        r = _per_step(chunk[REWARD_KEY].astype(np.float64), "mean")  # [B, t]
        term = _per_step(chunk[TERMINAL_KEY], "max") > 0  # [B, t]
        trunc = (
            _per_step(chunk[TRUNCATION_KEY], "max") > 0
            if TRUNCATION_KEY in chunk
            else np.zeros_like(term)
        )
        upd = chunk.get(self.update_key) if self.update_key else None
        for b in range(r.shape[0]):
            n = int(np.clip(self.lengths[b] - t0, 0, r.shape[1]))  # valid steps of row b here
            if n:
                u = None if upd is None else upd[b : b + 1, :n]
                self._add_row(b, t0, r[b, :n], term[b, :n], trunc[b, :n], u)

    def _add_row(
        self, b: int, t0: int, r: np.ndarray, term: np.ndarray, trunc: np.ndarray,
        upd: np.ndarray | None,
    ) -> None:
        """Close the episodes of row ``b`` that end in this chunk (``r, term, trunc``: [t])."""
        st = self.state
        ends = np.flatnonzero(term | trunc)  # local indices of episode ends
        csum = np.concatenate([[0.0], np.cumsum(r)])
        if upd is not None:
            lo, hi = _per_step(upd, "min")[0].astype(np.int64), _per_step(upd, "max")[0]
        prev = 0
        for e in ends:
            ret = st.ret[b] + csum[e + 1] - csum[prev]
            umin = umax = None
            if upd is not None:
                umin = min(st.umin[b], lo[prev : e + 1].min())
                umax = max(st.umax[b], int(hi[prev : e + 1].max()))
            stop = t0 + e + 1
            self.records.append(
                (b, st.start[b], stop - st.start[b], ret, term[e], trunc[e] and not term[e], True,
                 umin, umax)
            )
            st.start[b], st.ret[b] = stop, 0.0
            st.umin[b], st.umax[b] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
            prev = e + 1
        st.ret[b] += csum[-1] - csum[prev]
        if upd is not None and prev < r.shape[0]:
            st.umin[b] = min(st.umin[b], lo[prev:].min())
            st.umax[b] = max(st.umax[b], int(hi[prev:].max()))

    def finish(self) -> EpisodeTable:
        st = self.state
        for b in range(st.start.shape[0]):
            stop = int(self.lengths[b])
            if st.start[b] < stop:
                has = self.update_key is not None
                self.records.append(
                    (b, st.start[b], stop - st.start[b], st.ret[b], False, False, False,
                     st.umin[b] if has else None, st.umax[b] if has else None)
                )
        recs = sorted(self.records, key=lambda x: (x[1] + x[2], x[0]))
        cols = list(zip(*recs, strict=False)) if recs else [()] * 9
        dtypes = (np.int64, np.int64, np.int64, np.float64, bool, bool, bool, np.int64, np.int64)
        arrays = [np.asarray(c, dtype=d) for c, d in zip(cols[:7], dtypes[:7], strict=False)]
        if self.update_key is None:
            return EpisodeTable(*arrays, None, None)
        return EpisodeTable(*arrays, np.asarray(cols[7], np.int64), np.asarray(cols[8], np.int64))
