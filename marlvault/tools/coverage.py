"""State-action coverage of a vault, streaming.

Two figures, both "distinct pairs / transitions" over every stored step of every row (steps at
or beyond a row's valid length, ``Vault.row_lengths``, are padding and not counted):

* **joint state-action coverage**: distinct ``(state, joint action)`` pairs, where the state is
  ``infos.state`` when the vault has it and otherwise the joint observation (all agents'
  observations concatenated; the report says which);
* **per-agent observation-action coverage**: for each agent, distinct ``(observation, action)``
  pairs of that agent, then averaged over agents.

Float values are rounded to ``decimals`` decimal places first (``round(x * 10**decimals)`` as an
integer; integer leaves are used as they are). Each transition is hashed to 64 bits chunk by
chunk; the distinct hashes are kept in sorted numpy arrays, 8 bytes per distinct pair per counter
(N + 1 counters), never the data itself. Two different pairs share a hash with probability about
``n**2 / 2**65`` for ``n`` distinct pairs (below 3e-4 for 1e8 pairs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from marlvault.errors import ConfigError, DatasetError
from marlvault.tools._common import (
    ACTION_KEY,
    OBS_KEY,
    STATE_KEY,
    iter_flat_chunks,
    open_vault,
    row_lengths,
    valid_steps,
    vault_keys,
)

_MERGE_AT = 1 << 22  # merge buffered hash arrays when they hold this many entries


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def coverage(
    vault: Any, decimals: int = 2, progress: bool = False, budget: int | None = None
) -> Coverage:
    """Joint state-action and mean per-agent observation-action coverage of a vault.

    Args:
        vault: path/URL or open vault with ``observations [B,T,N,O]`` and ``actions [B,T,N(,A)]``.
        decimals: decimal places float values are rounded to (>= 0).
        progress: show a progress bar.
        budget: bytes per streamed chunk.
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
        read = [OBS_KEY, ACTION_KEY] + ([STATE_KEY] if has_state else [])
        joint, agents, total, lengths = UniqueCounter(), None, 0, row_lengths(v)
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
            joint.add(hash_rows([state_q, act_q.reshape(m, -1)]))
            agents = agents or [UniqueCounter() for _ in range(n)]
            for i, counter in enumerate(agents):
                counter.add(hash_rows([obs_q[:, i], act_q[:, i]]))
            total += m
        agent_unique = tuple(c.count for c in agents or [])
        return Coverage(
            path=str(v.path), transitions=total, decimals=decimals,
            state_source=STATE_KEY if has_state else "joint observation",
            joint_unique=joint.count, joint_coverage=joint.count / total if total else 0.0,
            agent_unique=agent_unique,
            agent_coverage=float(np.mean(agent_unique) / total) if total and agent_unique else 0.0,
        )
