"""State-action coverage of a vault, streaming, exact, in bounded memory.

Two figures, both "distinct pairs / transitions" over every stored step of every row (steps at
or beyond a row's valid length, ``Vault.row_lengths``, are padding and not counted):

* **joint state-action coverage**: distinct ``(state, joint action)`` pairs, where the state is
  ``infos.state`` when the vault has it and otherwise the joint observation (all agents'
  observations concatenated; the report says which);
* **per-agent observation-action coverage**: for each agent, distinct ``(observation, action)``
  pairs of that agent, then averaged over agents.

Float values are rounded to ``decimals`` decimal places first (``round(x * 10**decimals)`` as an
integer; integer leaves are used as they are). Each transition is hashed to 64 bits chunk by
chunk (N + 1 counters: joint and one per agent). Two different pairs share a hash with
probability about ``n**2 / 2**65`` for ``n`` distinct pairs (below 3e-4 for 1e8 pairs).

Memory: when the distinct hashes of every counter fit ``memory_budget_mb`` (judged from the
number of transitions, known up front), they are kept in sorted numpy arrays
(:class:`UniqueCounter`). Otherwise each counter routes every hash by its top ``bits`` bits to
one of ``P = 2**bits`` partitions, appending them as raw little-endian uint64 to one temporary
file per (counter, partition) (:class:`PartitionedCounter`); distinct values are then counted one
file at a time and summed. Equal hashes always land in the same partition, so the sum is exact
and equals the in-memory count; only one partition's distinct values are in memory at a time.
Temporary disk use is at most 8 bytes per transition per counter (less when values repeat)::

    <tmp>/marlvault-coverage-XXXX/
        c0-p0000.u64 ... c0-p{P-1}.u64      # counter 0: joint (state, joint action)
        c1-p0000.u64 ...                    # counter 1: agent 0's (observation, action)
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from marlvault.errors import ConfigError, DatasetError
from marlvault.schema import ACTIONS as ACTION_KEY
from marlvault.schema import OBS as OBS_KEY
from marlvault.schema import STATE as STATE_KEY
from marlvault.tools._common import (
    iter_flat_chunks,
    open_vault,
    row_lengths,
    step_specs,
    valid_steps,
    vault_keys,
)

_MERGE_AT = 1 << 22  # merge buffered hash arrays when they hold this many entries
DEFAULT_MEMORY_MB = 256.0
"""Default memory budget (MiB) for the hashes coverage holds."""
_BYTES_PER_ENTRY = 32  # 8-byte hash, up to 4 copies alive while sorting/merging
_SLACK = 1.25  # headroom for partitions that get more than their share of distinct hashes
_MAX_BITS = 12  # at most 4096 partitions per counter


@dataclass(frozen=True)
class Coverage:
    """Coverage figures of one vault."""

    path: str
    transitions: int
    """Stored steps counted (valid steps of every row; padding excluded)."""
    decimals: int
    """Rounding of float values before comparison."""
    state_source: str
    """``"infos.state"`` or ``"joint observation"``."""
    joint_unique: int
    """Distinct (state, joint action) pairs."""
    joint_coverage: float
    """``joint_unique / transitions``."""
    agent_unique: tuple[int, ...]
    """Distinct (observation, action) pairs of each agent."""
    agent_coverage: float
    """Mean over agents of ``agent_unique[i] / transitions``."""
    partitions: int = 1
    """Hash partitions per counter (1: counted in memory, no temporary files)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Counter(Protocol):
    """Counts distinct uint64 hashes: ``add`` batches, then read ``count`` once at the end."""

    def add(self, hashes: np.ndarray) -> None: ...

    @property
    def count(self) -> int: ...


class UniqueCounter:
    """Counts distinct uint64 hashes added in batches, in sorted arrays (8 bytes each)."""

    def __init__(self) -> None:
        self.merged = np.zeros(0, np.uint64)
        self.pending: list[np.ndarray] = []
        self.pending_size = 0

    def add(self, hashes: np.ndarray) -> None:
        u = np.unique(hashes)
        self.pending.append(u)
        self.pending_size += u.size
        if self.pending_size >= max(_MERGE_AT, self.merged.size):
            self._merge()

    def _merge(self) -> None:
        if self.pending:
            self.merged = np.unique(np.concatenate([self.merged, *self.pending]))
            self.pending, self.pending_size = [], 0

    @property
    def count(self) -> int:
        self._merge()
        return int(self.merged.size)


class PartitionedCounter:
    """Counts distinct uint64 hashes exactly, holding at most a bounded number in memory.

    Each batch is deduplicated and sorted, split by its top ``bits`` bits and buffered; when the
    buffer holds ``flush_entries`` hashes, every partition's share is appended to the file
    ``{directory}/{name}-p{k:04d}.u64`` (raw uint64). ``count`` then reads one file at a time in
    blocks of ``block_entries``, keeps that partition's distinct values, adds up their numbers and
    deletes the file.

    Args:
        directory: an existing folder for the partition files.
        name: file name prefix, unique per counter within ``directory``.
        bits: partitions are ``2**bits`` (1..16).
        flush_entries: hashes buffered in memory before they are written out.
        block_entries: hashes read from a partition file at a time when counting.
    """

    def __init__(self, directory: str, name: str, bits: int, flush_entries: int,
                 block_entries: int) -> None:
        if not 1 <= bits <= 16:
            raise ConfigError(f"PartitionedCounter: expected 1 <= bits <= 16, found {bits}")
        self.paths = [os.path.join(directory, f"{name}-p{k:04d}.u64") for k in range(1 << bits)]
        self.bits, self.flush_entries = bits, max(1, flush_entries)
        self.block_entries = max(1, block_entries)
        # [P] first hash value of each partition: k << (64 - bits)
        self._edges = np.arange(1 << bits, dtype=np.uint64) << np.uint64(64 - bits)
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self._count: int | None = None

    def add(self, hashes: np.ndarray) -> None:
        if self._count is not None:
            raise ConfigError("PartitionedCounter: add() after count was read; use a new counter")
        u = np.unique(hashes)  # sorted, so each partition is one contiguous slice
        self.buffer.append(u)
        self.buffered += u.size
        if self.buffered >= self.flush_entries:
            self.flush()

    def flush(self) -> None:
        """Append the buffered hashes to their partition files and empty the buffer."""
        if not self.buffer:
            return
        # [P + 1] slice bounds of each partition in each buffered (sorted) batch
        bounds = [np.append(np.searchsorted(b, self._edges), b.size) for b in self.buffer]
        for k, path in enumerate(self.paths):
            pieces = [b[e[k]:e[k + 1]] for b, e in zip(self.buffer, bounds, strict=True)]
            pieces = [x for x in pieces if x.size]
            if pieces:
                with open(path, "ab") as f:
                    np.concatenate(pieces).astype("<u8", copy=False).tofile(f)
        self.buffer, self.buffered = [], 0

    def _count_file(self, path: str) -> int:
        if not os.path.exists(path):
            return 0
        distinct = np.zeros(0, np.uint64)
        with open(path, "rb") as f:
            while (block := np.fromfile(f, "<u8", count=self.block_entries)).size:
                distinct = np.union1d(distinct, block.astype(np.uint64, copy=False))
        os.remove(path)
        return int(distinct.size)

    @property
    def count(self) -> int:
        if self._count is None:
            self.flush()
            self._count = sum(self._count_file(p) for p in self.paths)
        return self._count


def partition_bits(transitions: int, counters: int, memory_budget_mb: float) -> int:
    """Partition bits so the hashes held in memory fit ``memory_budget_mb``: 0 = all in memory.

    In memory needs about 32 bytes per transition per counter (sorted hashes and merge copies).
    Partitioned, one partition's distinct hashes (at most ``transitions / P``, with 25% slack) and
    one read block share the budget while counting.

    Raises:
        ConfigError: the budget is not positive, or needs more than ``2**12`` partitions.
    """
    if not memory_budget_mb > 0:
        raise ConfigError(f"coverage: expected memory_budget_mb > 0, found {memory_budget_mb}; "
                          f"use e.g. {DEFAULT_MEMORY_MB:g}")
    fit = int(memory_budget_mb * 2**20) // _BYTES_PER_ENTRY  # entries the budget holds
    if transitions * counters <= fit:
        return 0
    per_partition = max(1, fit // 2)  # the other half is the read block
    bits = max(1, math.ceil(math.log2(max(2.0, transitions * _SLACK / per_partition))))
    if bits > _MAX_BITS:
        need = transitions * _SLACK / (1 << _MAX_BITS) * 2 * _BYTES_PER_ENTRY / 2**20
        raise ConfigError(f"coverage: memory budget {memory_budget_mb:g} MiB is too small for "
                          f"{transitions} transitions (needs more than {1 << _MAX_BITS} "
                          f"partitions); expected at least {need:.1f} MiB, raise --memory-mb")
    return bits


def _make_counters(count: int, bits: int, directory: str | None,
                   memory_budget_mb: float) -> list[Counter]:
    """``count`` counters: in memory when ``bits == 0``, else partitioned under ``directory``."""
    if bits == 0 or directory is None:
        return [UniqueCounter() for _ in range(count)]
    fit = int(memory_budget_mb * 2**20) // _BYTES_PER_ENTRY
    flush = max(1, fit // count)  # write buffers of all counters together fit the budget
    return [PartitionedCounter(directory, f"c{i}", bits, flush, max(1, fit // 2))
            for i in range(count)]


@contextlib.contextmanager
def _scratch_dir(tmp_dir: str | None, bits: int) -> Iterator[str | None]:
    """A temporary folder under ``tmp_dir`` (removed after) when ``bits > 0``; else ``None``."""
    if bits == 0:
        yield None
        return
    if tmp_dir is not None and not os.path.isdir(tmp_dir):
        raise ConfigError(f"coverage: expected --tmp-dir {tmp_dir!r} to be an existing folder, "
                          "found none; create it or leave the option out")
    with tempfile.TemporaryDirectory(prefix="marlvault-coverage-", dir=tmp_dir) as scratch:
        yield scratch


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def quantize(x: np.ndarray, decimals: int) -> np.ndarray:
    """Integer view of ``x``: floats as ``round(x * 10**decimals)``, ints and bools unchanged."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return np.rint(x.astype(np.float64) * 10.0**decimals).astype(np.int64)
    return x.astype(np.int64)


def hash_rows(columns: list[np.ndarray]) -> np.ndarray:
    """64-bit hash of each row of the int64 matrices ``columns`` (each ``[M, d_i]``), ``[M]``."""
    m = columns[0].shape[0]
    h = np.full(m, 0x9E3779B97F4A7C15, np.uint64)
    with np.errstate(over="ignore"):
        for block in columns:
            for j in range(block.shape[1]):
                h = _mix(h ^ block[:, j].astype(np.uint64))
            h = _mix(h ^ np.uint64(block.shape[1]))  # separate the parts
    return h


def _stream_hashes(v: Any, counters: list[Counter], decimals: int, has_state: bool,
                   budget: int | None, progress: bool) -> int:
    """Hash every valid transition of ``v`` into ``counters`` (joint first, then one per agent);
    return the number of transitions."""
    read = [OBS_KEY, ACTION_KEY] + ([STATE_KEY] if has_state else [])
    lengths, total = row_lengths(v), 0
    for t0, chunk in iter_flat_chunks(v, read, budget, "coverage" if progress else None):
        t, n = chunk[OBS_KEY].shape[1:3]
        keep = valid_steps(lengths, t0, t)  # [B, t]: padding is no transition
        obs, act = chunk[OBS_KEY][keep], chunk[ACTION_KEY][keep]  # [m, N, O], [m, N(, A)]
        m = obs.shape[0]
        if m == 0:
            continue
        obs_q = quantize(obs, decimals).reshape(m, n, -1)
        act_q = quantize(act, decimals).reshape(m, n, -1)
        state_q = (quantize(chunk[STATE_KEY][keep], decimals).reshape(m, -1) if has_state
                   else obs_q.reshape(m, -1))
        counters[0].add(hash_rows([state_q, act_q.reshape(m, -1)]))
        for i in range(n):
            counters[1 + i].add(hash_rows([obs_q[:, i], act_q[:, i]]))
        total += m
    return total


def coverage(
    vault: Any,
    decimals: int = 2,
    progress: bool = False,
    budget: int | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_MB,
    tmp_dir: str | None = None,
) -> Coverage:
    """Joint state-action and mean per-agent observation-action coverage of a vault.

    Args:
        vault: path/URL or open vault with ``observations [B,T,N,O]`` and ``actions [B,T,N(,A)]``.
        decimals: decimal places float values are rounded to (>= 0).
        progress: show a progress bar.
        budget: bytes per streamed chunk.
        memory_budget_mb: MiB for the hashes held in memory (not counting the streamed chunk);
            above it, hashes are partitioned into temporary files (same figures).
        tmp_dir: folder for the temporary partition files (default: the system's temp folder);
            they are removed before returning.
    """
    if decimals < 0:
        raise ConfigError(f"coverage: expected decimals >= 0, found {decimals}")
    with open_vault(vault) as v:
        keys = vault_keys(v)
        for need in (OBS_KEY, ACTION_KEY):
            if need not in keys:
                raise DatasetError(f"{v.path}: coverage expected key {need!r}, found keys {keys}; "
                                   "use a vault with the OG-MARL schema")
        has_state = STATE_KEY in keys
        n_agents = step_specs(v)[OBS_KEY][0][0]
        bits = partition_bits(int(row_lengths(v).sum()), n_agents + 1, memory_budget_mb)
        with _scratch_dir(tmp_dir, bits) as scratch:
            counters = _make_counters(n_agents + 1, bits, scratch, memory_budget_mb)
            total = _stream_hashes(v, counters, decimals, has_state, budget, progress)
            joint, *agents = [c.count for c in counters]
        agent_unique = tuple(agents) if total else ()
        return Coverage(
            path=str(v.path), transitions=total, decimals=decimals,
            state_source=STATE_KEY if has_state else "joint observation",
            joint_unique=joint, joint_coverage=joint / total if total else 0.0,
            agent_unique=agent_unique,
            agent_coverage=float(np.mean(agent_unique) / total) if total and agent_unique else 0.0,
            partitions=1 << bits,
        )
