"""Episode segmentation, the only one: pure numpy functions over explicit state.

The vault's index (:mod:`marlvault.vault.episode_log`), ``verify`` and the dataset tools all
segment through :func:`scan_flat` / :func:`scan_block` and :func:`clip_to_lengths`.

An episode ends at step t of a row when any agent's ``terminals`` or ``truncations`` is non-zero
at t (see ``format.TERMINAL_KEYS``/``TRUNCATION_KEYS`` for accepted key names). Its return is the
sum over its steps of the per-step mean over agents (all trailing axes) of ``rewards``.

The index is a numpy structured array with dtype :data:`EPISODE_DTYPE`, sorted by (row, start);
the last, still running episode of each row is included with ``complete == False``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from marlvault.vault import format as fmt

EPISODE_DTYPE = np.dtype(
    [
        ("row", np.int32),
        ("start", np.int64),
        ("length", np.int64),
        ("return", np.float64),
        ("terminated", np.bool_),
        ("truncated", np.bool_),
        ("complete", np.bool_),
    ]
)
"""One record per episode; ``start``/``length`` in time steps of the row."""

class EpisodeKeys(NamedTuple):
    """The leaves segmentation reads (None: absent from the vault)."""

    rewards: str | None
    terminals: str | None
    truncations: str | None

    @property
    def present(self) -> list[str]:
        """The keys that exist."""
        return [k for k in self if k]


def find_keys(keys: Sequence[str]) -> EpisodeKeys:
    """Pick the reward / terminal / truncation leaves among ``keys`` (first alias that exists)."""

    def first(names: Sequence[str]) -> str | None:
        return next((n for n in names if n in keys), None)

    return EpisodeKeys(
        first(fmt.REWARD_KEYS), first(fmt.TERMINAL_KEYS), first(fmt.TRUNCATION_KEYS)
    )


class EpisodeCursor(NamedTuple):
    """Running state of the index after ``steps`` time steps."""

    num_episodes: int  # finished episodes stored so far
    steps: int  # time steps covered
    open_start: np.ndarray  # [B] int64, start of each row's running episode
    open_return: np.ndarray  # [B] float64, return so far of each row's running episode


def empty_cursor(num_rows: int) -> EpisodeCursor:
    return EpisodeCursor(0, 0, np.zeros(num_rows, np.int64), np.zeros(num_rows, np.float64))


def cursor_to_array(cursor: EpisodeCursor) -> np.ndarray:
    """Pack into the stored ``(B + 1, 2)`` float64 array."""
    out = np.empty((len(cursor.open_start) + 1, 2), np.float64)
    out[0] = (cursor.num_episodes, cursor.steps)
    out[1:, 0] = cursor.open_start
    out[1:, 1] = cursor.open_return
    return out


def cursor_from_array(arr: np.ndarray) -> EpisodeCursor:
    """Inverse of :func:`cursor_to_array`."""
    return EpisodeCursor(
        int(arr[0, 0]), int(arr[0, 1]), arr[1:, 0].astype(np.int64), arr[1:, 1].astype(np.float64)
    )


def _per_step(x: np.ndarray | None, shape: tuple[int, int], reduce: str) -> np.ndarray:
    if x is None:
        return np.zeros(shape, np.float64 if reduce == "mean" else np.bool_)
    x = np.asarray(x).reshape(shape[0], shape[1], -1)
    if reduce == "mean":
        return x.mean(axis=2, dtype=np.float64) if x.shape[2] else np.zeros(shape)
    return (x != 0).any(axis=2)


def scan_block(
    cursor: EpisodeCursor,
    start: int,
    rewards: np.ndarray | None,
    terminals: np.ndarray | None,
    truncations: np.ndarray | None,
) -> tuple[np.ndarray, EpisodeCursor]:
    """Advance the index over a block of committed steps.

    Args:
        cursor: state after ``cursor.steps`` steps, with ``start <= cursor.steps``.
        start: first time step of the block.
        rewards: [B, T, ...] numeric or None (returns become 0).
        terminals: [B, T, ...] or None.
        truncations: [B, T, ...] or None.

    Returns:
        (rows, cursor): finished episodes as [K, 6] float64 (columns ``format.EPISODE_COLUMNS``)
        and the cursor after ``start + T`` steps.
    """
    block = next(
        x
        for x in (rewards, terminals, truncations, np.zeros((len(cursor.open_start), 0)))
        if x is not None
    )
    num_rows, length = block.shape[0], block.shape[1]
    skip = cursor.steps - start
    shape = (num_rows, length - skip)
    r = _per_step(None if rewards is None else rewards[:, skip:], shape, "mean")
    term = _per_step(None if terminals is None else terminals[:, skip:], shape, "any")
    trunc = _per_step(None if truncations is None else truncations[:, skip:], shape, "any")
    ends = term | trunc
    csum = np.cumsum(r, axis=1)
    found = []
    open_start = cursor.open_start.copy()
    open_return = cursor.open_return.copy()
    for b in range(num_rows):
        idx = np.flatnonzero(ends[b])
        if idx.size:
            prev = np.concatenate([[-1], idx[:-1]])
            rets = csum[b, idx] - np.where(prev >= 0, csum[b, np.maximum(prev, 0)], 0.0)
            rets[0] += open_return[b]
            starts = np.concatenate([[open_start[b]], cursor.steps + idx[:-1] + 1])
            stops = cursor.steps + idx + 1
            t_flag = term[b, idx]
            found.append(
                np.stack(
                    [
                        np.full(idx.size, b),
                        starts,
                        stops - starts,
                        rets,
                        t_flag,
                        trunc[b, idx] & ~t_flag,
                    ],
                    axis=1,
                ).astype(np.float64)
            )
            open_start[b] = stops[-1]
            open_return[b] = csum[b, -1] - csum[b, idx[-1]] if shape[1] else 0.0
        elif shape[1]:
            open_return[b] += csum[b, -1]
    rows = np.concatenate(found) if found else np.zeros((0, 6), np.float64)
    new = EpisodeCursor(cursor.num_episodes + len(rows), start + length, open_start, open_return)
    return rows, new


def scan_flat(
    cursor: EpisodeCursor, start: int, steps: int, flat: dict[str, np.ndarray], keys: EpisodeKeys
) -> tuple[np.ndarray, EpisodeCursor]:
    """:func:`scan_block` over a flat chunk ``{key: [B, steps, ...]}`` holding ``keys.present``.

    Args:
        cursor: state after ``cursor.steps`` steps, with ``start <= cursor.steps``.
        start: first time step of the chunk.
        steps: T, the chunk's length (the chunk may hold no episode key at all).
        flat: the chunk.
        keys: the vault's episode keys.

    Returns:
        As :func:`scan_block`.
    """
    r, term, trunc = (flat[k] if k else None for k in keys)
    if r is None and term is None and trunc is None:
        r = np.zeros((len(cursor.open_start), steps))
    return scan_block(cursor, start, r, term, trunc)


def clip_to_lengths(
    index: np.ndarray,
    lengths: np.ndarray,
    read_rewards: Callable[[int, int, int], np.ndarray] | None,
) -> np.ndarray:
    """Drop episodes that start in a row's padding; cut the one that crosses into it.

    A cut episode is incomplete (its end is not in the vault); its return is recomputed over its
    valid steps only.

    Args:
        index: an index of :data:`EPISODE_DTYPE` (modified in place and returned filtered).
        lengths: ``[B]`` valid steps per row.
        read_rewards: ``(row, start, stop) -> [1, stop - start, ...]`` rewards, or None when the
            vault has none (returns become 0).

    Returns:
        The clipped index, same order.
    """
    index = index[index["start"] < lengths[index["row"]]]
    cut = np.flatnonzero(index["start"] + index["length"] > lengths[index["row"]])
    for i in cut:
        row, start = int(index["row"][i]), int(index["start"][i])
        stop = int(lengths[row])
        index["length"][i] = stop - start
        index["terminated"][i] = index["truncated"][i] = index["complete"][i] = False
        ret = 0.0
        if read_rewards is not None:
            ret = float(_per_step(read_rewards(row, start, stop), (1, stop - start), "mean").sum())
        index["return"][i] = ret
    return index


def make_index(finished: np.ndarray, cursor: EpisodeCursor) -> np.ndarray:
    """Build the public index from stored finished rows ([K, 6]) and the cursor."""
    running = np.flatnonzero(cursor.open_start < cursor.steps)
    out = np.zeros(len(finished) + len(running), EPISODE_DTYPE)
    k = len(finished)
    out["row"][:k] = finished[:, 0]
    out["start"][:k] = finished[:, 1]
    out["length"][:k] = finished[:, 2]
    out["return"][:k] = finished[:, 3]
    out["terminated"][:k] = finished[:, 4] != 0
    out["truncated"][:k] = finished[:, 5] != 0
    out["complete"][:k] = True
    out["row"][k:] = running
    out["start"][k:] = cursor.open_start[running]
    out["length"][k:] = cursor.steps - cursor.open_start[running]
    out["return"][k:] = cursor.open_return[running]
    order = np.lexsort((out["start"], out["row"]))
    return out[order]
