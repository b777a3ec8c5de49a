"""Streaming mode: windows cut block by block from ``Vault.iter_chunks``, served from a bounded
shuffle buffer, so host memory does not grow with the vault."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from marlvault.errors import DatasetError
from marlvault.offline.windows import (
    DataSpec,
    SequenceBatch,
    StepArrays,
    concat_steps,
    episode_positions,
    gather_windows,
    mark_padding,
    pad_steps,
    slice_steps,
    steps_from_tree,
    window_starts,
)

if TYPE_CHECKING:
    from marlvault.offline.dataset import DatasetConfig


class _StreamCarry(NamedTuple):
    tail: StepArrays | None  # steps not yet used as window starts
    tail_pos: np.ndarray | None  # [B, T_tail]
    pos_before: np.ndarray  # [B]
    ended_before: np.ndarray  # [B] bool


def stream_windows(blocks: Iterator[Any], spec: DataSpec, config: DatasetConfig,
                   path: str = "<vault>", row_lengths: Any = None) -> Iterator[SequenceBatch]:
    """Cuts windows block by block; yields batch-major numpy windows. Memory: one block + L.

    ``blocks`` are consecutive from time step 0; steps at or beyond ``row_lengths[b]`` ([B] int,
    None: all valid) are padding, masked like steps after an episode end.
    """
    seq_len, b = config.seq_len, spec.num_rows
    carry = _StreamCarry(None, None, np.full(b, -1), np.zeros(b, bool))
    offset = 0
    for block in blocks:
        steps = mark_padding(steps_from_tree(block, spec, path), row_lengths, offset)
        offset += steps.obs.shape[1]
        ended = (steps.terminal + steps.truncated) > 0
        pos = episode_positions(ended, carry.pos_before, carry.ended_before)
        carry = _StreamCarry(carry.tail, carry.tail_pos, pos[:, -1], ended[:, -1])
        buf = steps if carry.tail is None else concat_steps(carry.tail, steps)
        buf_pos = pos if carry.tail_pos is None else np.concatenate([carry.tail_pos, pos], 1)
        limit = buf.obs.shape[1] - seq_len - 1  # last start whose window is inside the buffer
        if limit >= 0:
            rows, t0 = window_starts(buf_pos, buf.present, config.window_stride, limit)
            if rows.size:
                yield gather_windows(buf, rows, t0, seq_len, spec, np)
        keep = max(limit + 1, 0)
        carry = carry._replace(tail=slice_steps(buf, keep), tail_pos=buf_pos[:, keep:])
    if carry.tail is not None and carry.tail.obs.shape[1]:
        buf = pad_steps(carry.tail, seq_len + 1)
        rows, t0 = window_starts(carry.tail_pos, carry.tail.present, config.window_stride,
                                 carry.tail.obs.shape[1] - 1)
        if rows.size:
            yield gather_windows(buf, rows, t0, seq_len, spec, np)


def _take_items(batch: SequenceBatch, idx: Any) -> SequenceBatch:
    return SequenceBatch(*(x[idx] for x in batch))


def _put_items(buffer: SequenceBatch, idx: Any, items: SequenceBatch) -> None:
    for field, new in zip(buffer, items, strict=True):
        field[idx] = new


def shuffle_batches(windows: Iterator[SequenceBatch | None], capacity: int, batch_size: int,
                    rng: np.random.Generator) -> Iterator[SequenceBatch]:
    """A bounded shuffle buffer over a (repeating) window stream; yields batch-major batches.

    The buffer (preallocated, ``capacity`` windows) fills from the stream; then each batch takes
    ``batch_size`` random slots and refills them with the next windows. ``None`` in the stream
    marks the end of a pass over the vault: if the buffer is not full by then (a small vault), it
    shrinks to what the stream holds. Memory: the buffer plus one block of windows.
    """
    buffer: SequenceBatch | None = None
    size, pend, pos = 0, None, 0
    for items in windows:
        if items is None:
            capacity = max(min(capacity, size), 1)
            continue
        pend = items if pend is None or pos >= len(pend.mask) else SequenceBatch(
            *(np.concatenate([x[pos:], y]) for x, y in zip(pend, items, strict=True)))
        pos = 0
        if buffer is None:
            buffer = SequenceBatch(*(np.zeros((capacity, *x.shape[1:]), x.dtype) for x in pend))
        if size < capacity:
            take = min(capacity - size, len(pend.mask))
            _put_items(buffer, slice(size, size + take), _take_items(pend, slice(0, take)))
            size, pos = size + take, take
        while size >= capacity and len(pend.mask) - pos >= batch_size:
            slots = rng.choice(capacity, batch_size, replace=batch_size > capacity)
            yield _take_items(buffer, slots)
            _put_items(buffer, slots, _take_items(pend, slice(pos, pos + batch_size)))
            pos += batch_size


def _endless_windows(open_blocks, spec: DataSpec, config: DatasetConfig, path: str,
                     row_lengths: Any = None):
    """Window stream over repeated passes; ``None`` marks the end of each pass."""
    while True:
        produced = False
        for items in stream_windows(open_blocks(), spec, config, path, row_lengths):
            produced = True
            yield items
        if not produced:
            raise DatasetError(f"{path}: the vault holds no steps; record some data first")
        yield None
