"""Streaming mode: windows cut block by block from ``Vault.iter_chunks``, served from a bounded
shuffle buffer, so host memory does not grow with the vault."""

from __future__ import annotations

from collections import deque
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
                   path: str = "<vault>", row_lengths: Any = None,
                   agent_ids: bool = True) -> Iterator[SequenceBatch]:
    """Cuts windows block by block; yields batch-major numpy windows. Memory: one block + L.

    ``blocks`` are consecutive from time step 0; steps at or beyond ``row_lengths[b]`` ([B] int,
    None: all valid) are padding, masked like steps after an episode end. ``agent_ids=False``:
    raw observations even when ``spec.add_agent_ids`` (:class:`ShuffleBuffer` appends them).
    """
    seq_len, b = config.seq_len, spec.num_rows
    carry = _StreamCarry(None, None, np.full(b, -1), np.zeros(b, bool))
    offset = 0
    for block in blocks:
        steps = mark_padding(steps_from_tree(block, spec, path), row_lengths, offset)
        size = steps.obs.shape[1]
        offset += size
        ended = (steps.terminal + steps.truncated) > 0
        pos = episode_positions(ended, carry.pos_before, carry.ended_before)
        carry = _StreamCarry(carry.tail, carry.tail_pos, pos[:, -1], ended[:, -1])
        a = 0 if carry.tail is None else carry.tail.obs.shape[1]
        buf_pos = pos if a == 0 else np.concatenate([carry.tail_pos, pos], 1)
        present = steps.present if a == 0 else np.concatenate(
            [carry.tail.present, steps.present], 1)
        limit = a + size - seq_len - 1  # last start whose window is inside tail + block
        if limit >= 0:
            rows, t0 = window_starts(buf_pos, present, config.window_stride, limit)
            yield from _cut(carry.tail, steps, rows, t0, seq_len, spec, agent_ids)
        keep = max(limit + 1, 0)
        tail = (_copy(slice_steps(steps, keep - a)) if keep >= a  # a copy frees the block
                else concat_steps(slice_steps(carry.tail, keep), steps))
        carry = carry._replace(tail=tail, tail_pos=buf_pos[:, keep:])
    if carry.tail is not None and carry.tail.obs.shape[1]:
        buf = pad_steps(carry.tail, seq_len + 1)
        rows, t0 = window_starts(carry.tail_pos, carry.tail.present, config.window_stride,
                                 carry.tail.obs.shape[1] - 1)
        if rows.size:
            yield gather_windows(buf, rows, t0, seq_len, spec, np, agent_ids)


def _copy(steps: StepArrays) -> StepArrays:
    return StepArrays(*(None if x is None else x.copy() for x in steps))


def _cut(tail: StepArrays | None, steps: StepArrays, rows: np.ndarray, t0: np.ndarray,
         seq_len: int, spec: DataSpec, agent_ids: bool) -> Iterator[SequenceBatch]:
    """The windows starting at ``(rows, t0)`` ([K] each) of ``tail`` and ``steps`` joined in time,
    without copying ``steps``: those that start in the tail come from the tail and the first
    L + 1 steps of ``steps``, the others from ``steps`` alone (at most two batches)."""
    a = 0 if tail is None else tail.obs.shape[1]
    head = t0 < a
    if head.any():
        joined = concat_steps(tail, slice_steps(steps, 0, seq_len + 1))
        yield gather_windows(joined, rows[head], t0[head], seq_len, spec, np, agent_ids)
    if not head.all():
        yield gather_windows(steps, rows[~head], t0[~head] - a, seq_len, spec, np, agent_ids)


def _none_or(x: Any, fn: Any) -> Any:
    return None if x is None else fn(x)


ALIGN = 64
"""Byte alignment of the batches handed out: jax takes 64-byte-aligned numpy arrays on a CPU
device without copying them."""


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose data starts at a multiple of :data:`ALIGN` bytes."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class ShuffleBuffer:
    """A bounded shuffle buffer over a (repeating) window stream, serving time-major batches.

    The buffer (``capacity`` windows, preallocated time-major ``[L(+1), capacity, ...]``) fills
    from the stream; then each batch takes ``batch_size`` random slots and refills them with the
    next windows. ``None`` in the stream marks the end of a pass over the vault: if the buffer is
    not full by then (a small vault), it shrinks to what the stream holds. Memory: the buffer
    plus one block of windows.

    The stream's windows are batch-major (``[K, L(+1), ...]``, :func:`stream_windows`) and may
    leave out the agent ids (``ids``, ``[N, N]``): the buffer's observations hold them from the
    start, so a window is copied once into the buffer and once out of it into a batch. Batches
    are fresh, 64-byte-aligned arrays (:func:`aligned_empty`) that a CPU device takes as they
    are; nothing here writes to one after handing it out.
    """

    def __init__(self, windows: Iterator[SequenceBatch | None], capacity: int, batch_size: int,
                 rng: np.random.Generator, ids: np.ndarray | None = None) -> None:
        self.windows, self.capacity, self.batch_size, self.rng = windows, capacity, batch_size, rng
        self.ids = ids
        self.buffer: SequenceBatch | None = None
        self.size = 0
        self.pending: deque[SequenceBatch] = deque()  # stream windows not yet in the buffer
        self.pos = 0  # windows of ``pending[0]`` already used
        self.num_pending = 0

    def batch(self) -> SequenceBatch:
        """One time-major batch ``[L(+1), batch_size, ...]``."""
        return self._draw(None)

    def group(self, count: int) -> SequenceBatch:
        """``count`` consecutive batches stacked, ``[count, L(+1), batch_size, ...]``."""
        return self._draw(count)

    def __iter__(self) -> Iterator[SequenceBatch]:
        while True:
            yield self.batch()

    def _draw(self, count: int | None) -> SequenceBatch:
        self._fill()  # the buffer exists from here on
        lead = () if count is None else (count,)
        out = SequenceBatch(*(_none_or(x, lambda x: aligned_empty(
            (*lead, x.shape[0], self.batch_size, *x.shape[2:]), x.dtype)) for x in self.buffer))
        for i in range(count or 1):
            self._fill()
            slots = self.rng.choice(self.capacity, self.batch_size,
                                    replace=self.batch_size > self.capacity)
            for src, dst in zip(self.buffer, out, strict=True):
                if src is not None:
                    np.take(src, slots, axis=1, out=dst if count is None else dst[i], mode="clip")
            self._refill(slots)
        return out

    def _fill(self) -> None:
        """Pulls windows until the buffer is full and a batch's worth is pending."""
        while self.size < self.capacity or self.num_pending < self.batch_size:
            items = next(self.windows)
            if items is None:
                self.capacity = max(min(self.capacity, self.size), 1)
                continue
            if self.buffer is None:
                self.buffer = self._allocate(items)
            self.pending.append(items)
            self.num_pending += len(items.mask)
            if self.size < self.capacity:
                take = min(self.capacity - self.size, self.num_pending)
                self._refill(np.arange(self.size, self.size + take))
                self.size += take

    def _allocate(self, items: SequenceBatch) -> SequenceBatch:
        def one(x: Any) -> Any:
            return np.zeros((x.shape[1], self.capacity, *x.shape[2:]), x.dtype)

        buffer = SequenceBatch(*(_none_or(x, one) for x in items))
        if self.ids is None:
            return buffer
        obs = items.obs
        full = np.zeros((obs.shape[1], self.capacity, *obs.shape[2:-1],
                         obs.shape[-1] + self.ids.shape[-1]), obs.dtype)
        full[..., obs.shape[-1]:] = self.ids
        return buffer._replace(obs=full)

    def _refill(self, slots: np.ndarray) -> None:
        """Writes the next ``len(slots)`` pending windows into ``slots`` of the buffer."""
        done = 0
        while done < len(slots):
            head = self.pending[0]
            n = min(len(slots) - done, len(head.mask) - self.pos)
            part = slots[done:done + n]
            for name, dst, src in zip(SequenceBatch._fields, self.buffer, head, strict=True):
                if src is None:
                    continue
                src = src[self.pos:self.pos + n].swapaxes(0, 1)
                if name == "obs" and self.ids is not None:  # the ids are in the buffer already
                    dst[:, part, ..., :src.shape[-1]] = src
                else:
                    dst[:, part] = src
            done, self.pos, self.num_pending = done + n, self.pos + n, self.num_pending - n
            if self.pos == len(head.mask):
                self.pending.popleft()
                self.pos = 0


def _endless_windows(open_blocks, spec: DataSpec, config: DatasetConfig, path: str,
                     row_lengths: Any = None, agent_ids: bool = True):
    """Window stream over repeated passes; ``None`` marks the end of each pass."""
    while True:
        produced = False
        for items in stream_windows(open_blocks(), spec, config, path, row_lengths, agent_ids):
            produced = True
            yield items
        if not produced:
            raise DatasetError(f"{path}: the vault holds no steps; record some data first")
        yield None
