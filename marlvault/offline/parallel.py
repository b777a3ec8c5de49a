"""Data-parallel offline training over every device of the run, in one or several processes.

With ``S`` devices (all processes' devices, in process order), device ``d`` trains on share
``d`` of the vault (:func:`marlvault.offline.dataset.plan_share`: ``B/S`` rows each, or pieces of
a row cut at episode starts), and a process reads only its own devices' shares. One update
samples ``K/S`` windows on every device from its share, computes the algorithm's loss on them,
and averages the gradients over the devices before the optimiser step
(:func:`marlvault.optim.averaging_over`), so parameters and optimiser states stay identical
everywhere: the global batch is the ``S`` local batches together. Metrics are averaged too.

The algorithms are unchanged: their ``update`` is traced inside ``jax.shard_map`` over the mesh
axis :data:`AXIS`. The run equals, to float reduction order, the same run on one process with
the same number of devices (``XLA_FLAGS=--xla_force_host_platform_device_count=S``); with one
device the trainer does not come here at all.

Shapes: a share's steps are padded (absent steps, ``present == 0``) to the largest share's rows
and length, and its window list to the longest one with a count, so all shares stack into one
array ``[S, ...]`` split along :data:`AXIS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from marlvault.errors import ConfigError
from marlvault.offline.common import Algorithm
from marlvault.offline.dataset import DeviceData, OfflineDataset, make_device_data
from marlvault.offline.windows import (
    SequenceBatch,
    StepArrays,
    gather_windows,
    pad_steps,
    time_major,
)
from marlvault.online import anakin
from marlvault.optim import averaging_over

Array = jax.Array

AXIS = "data"
"""The mesh axis the devices (and the vault's shares) are split along."""


def make_mesh() -> Mesh:
    """Every device of every process, in process order, on axis :data:`AXIS`."""
    return Mesh(np.asarray(jax.devices()), (AXIS,))


def local_shares(mesh: Mesh) -> list[int]:
    """Indices of the shares (= mesh positions) whose device belongs to this process."""
    me = jax.process_index()
    return [i for i, d in enumerate(mesh.devices.flat) if d.process_index == me]


def local_batch_size(batch_size: int, mesh: Mesh) -> int:
    """``K / S`` windows per device and update.

    Raises:
        ConfigError: ``K`` does not split over the devices.
    """
    s = mesh.size
    if batch_size % s:
        raise ConfigError(
            f"system.batch_size: expected a multiple of the run's {s} devices (each samples an "
            f"equal share of every batch), found {batch_size}; fix: "
            f"system.batch_size={max(s, batch_size - batch_size % s)}"
        )
    return batch_size // s


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def to_local(tree: Any) -> Any:
    """Replicated global arrays as this process's own copies (for evaluation and saving)."""
    return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def _global_max(values: list[int]) -> np.ndarray:
    """Element-wise maximum of ``values`` over every process."""
    local = np.asarray(values, np.int64)
    return np.asarray(anakin.to_host(local)).reshape(-1, local.size).max(0)


def _pad_rows(steps: StepArrays, rows: int) -> StepArrays:
    def pad(x: Any) -> Any:
        if x is None:
            return None
        extra = np.zeros((rows - x.shape[0], *x.shape[1:]), x.dtype)
        return np.concatenate([x, extra])

    return StepArrays(*(pad(x) for x in steps))


def _pad_windows(x: np.ndarray, count: int) -> np.ndarray:
    return np.concatenate([x, np.zeros(count - len(x), x.dtype)])


class ShardedData:
    """The shares of this process's devices, stacked, as global arrays split over :data:`AXIS`.

    Attributes:
        data: :class:`DeviceData` whose every leaf is ``[S, ...]``.
        counts: ``[S]`` int32 windows in each share (the rest of its window list is padding).
    """

    def __init__(self, datasets: list[OfflineDataset], mesh: Mesh) -> None:
        host = [make_device_data(ds.host_steps(), ds.config, on_device=False) for ds in datasets]
        rows, length, windows = _global_max([
            max(h.steps.obs.shape[0] for h in host),
            max(h.steps.obs.shape[1] for h in host),
            max(len(h.rows) for h in host),
        ])  # fmt: skip
        padded = [
            DeviceData(
                _pad_rows(pad_steps(h.steps, int(length) - h.steps.obs.shape[1]), int(rows)),
                _pad_windows(h.rows, int(windows)),
                _pad_windows(h.t0, int(windows)),
            )
            for h in host
        ]
        sharding = NamedSharding(mesh, P(AXIS))

        def stack(*parts: Any) -> Any:
            if parts[0] is None:
                return None
            local = np.stack(parts)
            shape = (mesh.size, *local.shape[1:])
            return jax.make_array_from_process_local_data(sharding, local, shape)

        self.data = jax.tree.map(stack, *padded, is_leaf=lambda x: x is None)
        counts = np.asarray([len(h.rows) for h in host], np.int32)
        self.counts = jax.make_array_from_process_local_data(sharding, counts, (mesh.size,))


def _sample_share(data: DeviceData, count: Array, key: Array, spec: Any, seq_len: int,
                  k: int) -> SequenceBatch:
    pick = jax.random.randint(key, (k,), 0, count)
    batch = gather_windows(data.steps, data.rows[pick], data.t0[pick], seq_len, spec, jnp)
    return time_major(batch, jnp)


def make_sharded_scan(algo: Algorithm, spec: Any, seq_len: int, mesh: Mesh,
                      num_updates: int) -> Callable[..., tuple[Any, dict]]:
    """``run(state, data, counts, key) -> (state, metrics)``: ``num_updates`` data-parallel
    updates in one program (jitted); ``state`` replicated, ``data``/``counts`` from
    :class:`ShardedData`."""
    k = local_batch_size(algo.batch_size, mesh)

    def local(state: Any, data: DeviceData, counts: Array, key: Array) -> tuple[Any, dict]:
        data = jax.tree.map(lambda x: x[0], data)
        here = jax.lax.axis_index(AXIS)

        def body(carry: Any, step_key: Array) -> tuple[Any, dict]:
            batch = _sample_share(data, counts[0], jax.random.fold_in(step_key, here), spec,
                                  seq_len, k)  # fmt: skip
            return algo.update(carry, batch)

        with averaging_over(AXIS):
            state, metrics = jax.lax.scan(body, state, jax.random.split(key, num_updates))
        return state, jax.lax.pmean(jax.tree.map(jnp.mean, metrics), AXIS)

    mapped = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS), P()),
                           out_specs=(P(), P()), check_vma=False)  # fmt: skip
    return jax.jit(mapped)


def make_sharded_update(algo: Algorithm, mesh: Mesh) -> Callable[[Any, SequenceBatch], Any]:
    """``update(state, batch) -> (state, metrics)`` for a global time-major batch split along
    its batch axis (:func:`global_batch`)."""

    def local(state: Any, batch: SequenceBatch) -> tuple[Any, dict]:
        with averaging_over(AXIS):
            state, metrics = algo.update(state, batch)
        return state, jax.lax.pmean(metrics, AXIS)

    mapped = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(None, AXIS)),
                           out_specs=(P(), P()), check_vma=False)  # fmt: skip
    return jax.jit(mapped)


def global_batch(parts: list[SequenceBatch], mesh: Mesh) -> SequenceBatch:
    """This process's per-device host batches ``[L(+1), K/S, ...]`` (in :func:`local_shares`
    order) as one global batch split along axis 1."""
    sharding = NamedSharding(mesh, P(None, AXIS))
    devices = [mesh.devices.flat[i] for i in local_shares(mesh)]

    def join(*xs: Any) -> Any:
        if xs[0] is None:
            return None
        shape = (xs[0].shape[0], xs[0].shape[1] * mesh.size, *xs[0].shape[2:])
        arrays = [jax.device_put(np.asarray(x), d) for x, d in zip(xs, devices, strict=True)]
        return jax.make_array_from_single_device_arrays(shape, sharding, arrays)

    return jax.tree.map(join, *parts, is_leaf=lambda x: x is None)


def stream_parts(datasets: list[OfflineDataset], batch_size: int, seed: int,
                 shares: list[int]) -> Iterator[list[SequenceBatch]]:
    """Endless lists of one host batch per local share (share ``i`` seeded ``seed + i``)."""
    streams = [ds.batches(batch_size, seed + i) for ds, i in zip(datasets, shares, strict=True)]
    while True:
        yield [next(s) for s in streams]
