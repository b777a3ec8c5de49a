"""Offline datasets: the only way offline code reads vaults.

A vault row is one environment's continuous stream, episode after episode (``[row, time, agent,
...]``). This module cuts it into training items and hands them to the learner time-major
(``[time, batch, agent, ...]``).

**Modes.** ``"memory"`` puts every step on the device once and samples inside ``jit``;
``"stream"`` reads ``Vault.iter_chunks`` block by block, cuts windows on the host and serves
batches from a bounded shuffle buffer, so memory does not grow with the vault. ``"auto"`` picks
memory when the vault's decoded size fits ``memory_budget_bytes``.

The pieces live in :mod:`~marlvault.offline.windows` (episode windows, bootstrap masks, agent
ids) and :mod:`~marlvault.offline.streaming` (block-by-block windows, shuffle buffer); this module
opens the vault, holds the in-memory mode and re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.errors import ConfigError, DatasetError
from marlvault.offline.streaming import ShuffleBuffer, _endless_windows, stream_windows
from marlvault.offline.windows import (
    DataSpec,
    ObsMoments,
    ObsStats,
    SequenceBatch,
    StepArrays,
    episode_positions,
    gather_windows,
    mark_padding,
    merge_moments,
    normalise_obs,
    obs_moments,
    one_hot_ids,
    pad_steps,
    spec_from_tree,
    stats_from_moments,
    steps_from_tree,
    time_major,
    valid_steps,
    window_starts,
)
from marlvault.schema import (
    ACTIONS,
    LEGALS,
    NEXT_LEGALS,
    NEXT_OBS,
    NEXT_STATE,
    OBS,
    REWARDS,
    STATE,
    TERMINALS,
    TRUNCATIONS,
)

MODES = ("auto", "memory", "stream")


@dataclass(frozen=True)
class DatasetConfig:
    """How a vault is turned into training batches."""

    seq_len: int = 20
    """L, steps per window (1 gives transitions)."""
    stride: int = 0
    """Steps between window starts inside an episode; 0 means ``seq_len`` (no overlap)."""
    add_agent_ids: bool = True
    """Append a one-hot agent id to every observation at load time."""
    mode: str = "auto"
    """``"auto"``, ``"memory"`` (all steps on the device) or ``"stream"`` (bounded host memory)."""
    memory_budget_bytes: int = 2 * 1024**3
    """Largest decoded vault size ``"auto"`` puts in memory."""
    shuffle_windows: int = 4096
    """Streaming: number of windows held in the shuffle buffer."""
    steps_per_chunk: int = 0
    """Streaming: time steps read per request; 0 lets the vault choose."""
    need_state: bool = False
    """Raise :class:`DatasetError` when the vault has no ``infos.state`` (QMIX). Streaming
    reads the state only when this is set; otherwise its batches carry ``state`` ``[L+1, K, 0]``
    (memory mode keeps it)."""
    continuous_ok: bool = False
    """Accept continuous actions ``(B, T, N, A)`` (else raise :class:`DatasetError`)."""
    next_step: bool = True
    """Windows carry the observation, legal mask and state one step past their end (position
    ``L``, for TD targets); False: ``L`` positions (behaviour cloning needs no next step)."""
    algorithm: str = ""
    """Name of the algorithm the data is for (in error messages)."""

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ConfigError(f"dataset.seq_len: expected an integer >= 1, got {self.seq_len}")
        if self.stride < 0:
            raise ConfigError(f"dataset.stride: expected >= 0 (0 = seq_len), got {self.stride}")
        if self.mode not in MODES:
            raise ConfigError(f"dataset.mode: expected one of {MODES}, got {self.mode!r}")
        if self.shuffle_windows < 1:
            raise ConfigError(
                f"dataset.shuffle_windows: expected >= 1, got {self.shuffle_windows}"
            )

    @property
    def window_stride(self) -> int:
        return self.stride or self.seq_len

# --- in-memory mode ------------------------------------------------------------------------------
class DeviceData(NamedTuple):
    """The whole dataset on the device plus every window start."""

    steps: StepArrays  # [B, T + L + 1, ...] jax arrays
    rows: jax.Array  # [K] int32
    t0: jax.Array  # [K] int32


def make_device_data(steps: StepArrays, config: DatasetConfig,
                     on_device: bool = True) -> DeviceData:
    """Pads host steps, finds every window start and moves everything to the device (or keeps
    it on the host as numpy with ``on_device=False``)."""
    ended = (steps.terminal + steps.truncated) > 0
    b = ended.shape[0]
    pos = episode_positions(ended, np.full(b, -1), np.zeros(b, bool))
    rows, t0 = window_starts(pos, steps.present, config.window_stride, ended.shape[1] - 1)
    padded = pad_steps(steps, config.seq_len + 1)
    if not on_device:
        return DeviceData(padded, np.asarray(rows, np.int32), np.asarray(t0, np.int32))
    return DeviceData(jax.tree.map(jnp.asarray, padded), jnp.asarray(rows), jnp.asarray(t0))


def make_sampler(spec: DataSpec, seq_len: int, batch_size: int):
    """Returns ``sample(data, key) -> SequenceBatch`` (time-major), usable inside ``jit``."""

    def sample(data: DeviceData, key: jax.Array) -> SequenceBatch:
        pick = jax.random.randint(key, (batch_size,), 0, data.rows.shape[0])
        batch = gather_windows(data.steps, data.rows[pick], data.t0[pick], seq_len, spec, jnp)
        return time_major(batch, jnp)

    return sample

# --- shares: one device's part of the vault ------------------------------------------------------
class Share(NamedTuple):
    """The part of a vault one device trains on: rows ``[row0, row1)``, steps ``[start, stop)``."""

    row0: int
    row1: int
    start: int
    stop: int


def plan_share(vault: Any, index: int, count: int) -> Share:
    """Share ``index`` of ``count`` disjoint shares of ``vault`` (one per device of the run).

    Rows are split evenly when the device count divides them. Otherwise, when the rows divide
    the device count (an OG-MARL-layout vault has one row), each row is cut along time into
    ``count / B`` pieces at episode starts near equal lengths, so no episode is split.

    Raises:
        DatasetError: neither divides the other, or a row has too few episodes to cut.
    """
    b, t = int(vault.num_rows), int(vault.num_steps)
    if b % count == 0:
        per = b // count
        return Share(index * per, (index + 1) * per, 0, t)
    if count % b:
        raise DatasetError(
            f"{vault.path}: expected the vault's {b} rows to split over the run's {count} devices "
            f"(rows a multiple of the devices, or the devices a multiple of the rows), found "
            f"neither; fix: train on {_divisors_hint(b)} devices (processes x devices each)"
        )
    pieces, row = count // b, index // (count // b)
    episodes = vault.episodes
    starts = np.sort(episodes["start"][episodes["row"] == row]).astype(np.int64)
    cuts = [0]
    for k in range(1, pieces):
        later = starts[starts > cuts[-1]]
        if not later.size:
            break
        cuts.append(int(later[np.argmin(np.abs(later - k * t / pieces))]))
    if len(cuts) < pieces:
        raise DatasetError(
            f"{vault.path}: row {row} expected at least {pieces} episodes to cut into {pieces} "
            f"pieces (one per device), found {starts.size}; fix: train on fewer devices"
        )
    cuts.append(t)
    piece = index % pieces
    return Share(row, row + 1, cuts[piece], cuts[piece + 1])


def _divisors_hint(rows: int) -> str:
    small = [d for d in range(1, min(rows, 64) + 1) if rows % d == 0]
    return ", ".join(str(d) for d in small[:6]) + " or a multiple of " + str(rows)


# --- the dataset ---------------------------------------------------------------------------------
def _window_keys(continuous: bool, need_state: bool) -> set[str]:
    """The vault leaves :func:`steps_from_tree` reads (continuous actions have no legal masks;
    the state only for a learner that needs it)."""
    keys = {OBS, ACTIONS, REWARDS, TERMINALS, TRUNCATIONS, NEXT_OBS}
    keys |= set() if continuous else {LEGALS, NEXT_LEGALS}
    return keys | ({STATE, NEXT_STATE} if need_state else set())


def _open_vault(path: str):
    from marlvault.vault.vault import Vault

    return Vault.open(path, mode="r")


def _vault_metadata(vault: Any) -> dict:
    meta = getattr(vault, "metadata", None) or {}
    ours = meta.get("marlvault", {}) if isinstance(meta, dict) else {}
    return ours if isinstance(ours, dict) else {}


def _bytes_per_step(first: Any) -> int:
    """Decoded bytes of one time step of every row, from a one-step read."""
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(first)))


class OfflineDataset:
    """An opened vault ready to serve batches (see the module docstring).

    Example:
        >>> ds = OfflineDataset("vaults/rware.vlt/Good", DatasetConfig(seq_len=20))
        >>> if ds.mode == "memory":
        ...     data, sample = ds.device_data(), ds.sampler(batch_size=32)
        ...     batch = jax.jit(sample)(data, jax.random.key(0))
        ... else:
        ...     batch = next(ds.batches(batch_size=32, seed=0))
    """

    def __init__(self, path: str, config: DatasetConfig | None = None,
                 share: tuple[int, int] | None = None) -> None:
        """``share=(i, count)``: only share ``i`` of ``count`` (:func:`plan_share`), for one
        device of a run that trains on several."""
        self.path = str(path)
        self.config = config or DatasetConfig()
        vault = _open_vault(self.path)
        try:
            num_steps = int(vault.num_steps)
            if num_steps < 1:
                raise DatasetError(
                    f"{self.path}: expected at least one committed step, found 0; record data "
                    "into the vault first"
                )
            b = int(vault.num_rows)
            self.share = Share(0, b, 0, num_steps) if share is None else plan_share(vault, *share)
            sh = self.share
            num_steps = sh.stop - sh.start
            first = vault.read(start=sh.start, stop=sh.start + 1, rows=self._rows())
            self.metadata = _vault_metadata(vault)
            lengths = getattr(vault, "row_lengths", None)  # [B] int64; the rest is padding
            lengths = np.full(b, sh.stop, np.int64) if lengths is None else np.asarray(
                lengths, np.int64)
            self.row_lengths = np.clip(lengths[sh.row0:sh.row1] - sh.start, 0, num_steps)
        finally:
            vault.close()
        self.spec = spec_from_tree(first, self.path, num_steps, self.config.add_agent_ids,
                                   self.config.need_state, continuous_ok=self.config.continuous_ok,
                                   metadata=self.metadata, algorithm=self.config.algorithm,
                                   next_step=self.config.next_step)
        self.nbytes = _bytes_per_step(first) * num_steps
        self.mode = self._choose_mode()

    def _choose_mode(self) -> str:
        if self.config.mode != "auto":
            return self.config.mode
        return "memory" if self.nbytes <= self.config.memory_budget_bytes else "stream"

    @property
    def env_name(self) -> str | None:
        return self.metadata.get("env_name")

    @property
    def scenario(self) -> str | None:
        return self.metadata.get("scenario")

    def _rows(self) -> np.ndarray:
        return np.arange(self.share.row0, self.share.row1, dtype=np.int64)

    def _blocks(self, keys: Any = None) -> Iterator[Any]:
        """The dataset's steps block by block: the leaves ``keys``, or by default only the
        leaves its windows use."""
        vault = _open_vault(self.path)
        try:
            chunk = self.config.steps_per_chunk or None
            if keys is None:
                used = _window_keys(self.spec.continuous, self.config.need_state)
                keys = [k for k in vault.keys if k in used]
            for _, block in vault.iter_chunks(steps_per_chunk=chunk, rows=self._rows(), keys=keys,
                                              start=self.share.start, stop=self.share.stop):
                yield block
        finally:
            vault.close()

    def host_steps(self) -> StepArrays:
        """Every step of the dataset (its share) on the host (memory mode: all of it is read)."""
        vault = _open_vault(self.path)
        try:
            tree = vault.read(start=self.share.start, stop=self.share.stop, rows=self._rows())
        finally:
            vault.close()
        return mark_padding(steps_from_tree(tree, self.spec, self.path), self.row_lengths)

    def device_data(self) -> DeviceData:
        """The whole dataset on the device (memory mode)."""
        return make_device_data(self.host_steps(), self.config)

    def sampler(self, batch_size: int):
        """``sample(data, key) -> SequenceBatch`` for :meth:`device_data` (jittable)."""
        return make_sampler(self.spec, self.config.seq_len, batch_size)

    def batches(self, batch_size: int, seed: int = 0) -> Iterator[SequenceBatch]:
        """Endless time-major host batches in either mode (streaming through the shuffle buffer)."""
        if self.mode == "memory":
            data, sample = self.device_data(), jax.jit(self.sampler(batch_size))
            key = jax.random.key(seed)
            while True:
                key, sub = jax.random.split(key)
                yield sample(data, sub)
        else:
            yield from self.stream(batch_size, seed)

    def stream(self, batch_size: int, seed: int = 0) -> ShuffleBuffer:
        """Streaming mode's batches: ``.batch()`` one time-major host batch, ``.group(n)`` ``n``
        consecutive ones stacked (``[n, L(+1), K, ...]``), from a shuffle buffer of
        ``shuffle_windows`` windows over repeated passes of the vault."""
        ids = one_hot_ids(self.spec.num_agents) if self.spec.add_agent_ids else None
        windows = _endless_windows(self._blocks, self.spec, self.config, self.path,
                                   self.row_lengths, agent_ids=False)
        return ShuffleBuffer(windows, self.config.shuffle_windows, batch_size,
                             np.random.default_rng(seed), ids)

    def obs_stats(self) -> ObsStats:
        """Per-agent mean and std of every raw observation feature over the valid steps of the
        dataset (its share), padding left out; agent ids are not part of them.

        Both modes make one pass over the vault's observations alone, block by block (memory:
        one block), before the data itself is read.

        Returns:
            ``ObsStats(mean [N, O], std [N, O])`` float32 (population std).

        Raises:
            DatasetError: every step is padding.
        """
        return stats_from_moments(self._streamed_obs_moments(), self.path)

    def _streamed_obs_moments(self) -> ObsMoments:
        """Moments of the observations in one pass over the vault (its share), block by block."""
        zeros = np.zeros((self.spec.num_agents, self.spec.obs_dim))
        moments, offset = ObsMoments(0, zeros, zeros), 0
        for block in self._blocks(keys=[OBS]):
            obs = block[OBS]  # [B, T', N, O]
            valid = valid_steps(self.row_lengths, offset, obs.shape[1])
            moments = merge_moments(moments, obs_moments(obs, valid))
            offset += obs.shape[1]
        return moments

    def episode_returns(self) -> np.ndarray:
        """Returns of every complete episode (sum over time of the mean over agents), from the
        vault's episode index."""
        vault = _open_vault(self.path)
        try:
            index = vault.episodes
        finally:
            vault.close()
        return np.asarray(index["return"][index["complete"]], np.float64)


__all__ = ["MODES", "DataSpec", "DatasetConfig", "DeviceData", "ObsStats", "OfflineDataset",
           "SequenceBatch", "normalise_obs",
           "Share", "plan_share",
           "StepArrays", "gather_windows", "make_device_data", "make_sampler", "mark_padding",
           "pad_steps", "ShuffleBuffer", "spec_from_tree", "steps_from_tree", "stream_windows",
           "time_major"]
