"""Anakin layout: the one module that knows about devices.

All devices form a 1-D :class:`jax.sharding.Mesh` with the named axis ``"env"``: the local
ones, or in a multi-process run (:mod:`marlvault.distributed`) every process's, in process order. The
environments (and everything with a leading env axis: env states, timesteps, per-env keys,
trajectories) are split evenly along it; parameters, optimiser states and learner keys are
replicated. A learner function written for *one device's slice* of the envs is lifted with
:func:`shard_jit` (``jax.shard_map`` under ``jax.jit``); inside it, cross-device reductions use
``lax.pmean``/``lax.psum`` over :data:`AXIS` (gradients, advantage statistics, metrics). No
``pmap``.

With one device the same program runs unchanged (the collectives are no-ops). Tests force several
CPU devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``. Several processes run the
same program (SPMD): state is created sharded by :func:`jit_sharded` (each process keeps its
shards), and :func:`to_host` brings sharded results back whole to every process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from marlvault.errors import ConfigError

AXIS = "env"
"""Name of the mesh axis the environments are split along."""
SHARDED = P(AXIS)
"""Spec of an array whose leading axis is the env axis."""
REPLICATED = P()
"""Spec of an array every device holds whole."""


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process) with axis
    :data:`AXIS`."""
    devices = list(jax.devices()) if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def num_shards(mesh: Mesh) -> int:
    """Number of devices the env axis is split over."""
    return int(mesh.shape[AXIS])


def local_count(total: int, mesh: Mesh, key: str) -> int:
    """``total // devices``; raises if ``total`` does not split evenly over the mesh.

    Raises:
        ConfigError: naming ``key``, the total and the device count.
    """
    n = num_shards(mesh)
    if total % n:
        raise ConfigError(
            f"{key}: expected a multiple of the {n} devices, found {total}; "
            f"fix: set {key}={max(n, total - total % n)}"
        )
    return total // n


def put(tree: Any, mesh: Mesh, spec: Any) -> Any:
    """Place a pytree on the mesh. ``spec`` is one PartitionSpec or a matching pytree of them."""
    if isinstance(spec, P):
        return jax.device_put(tree, NamedSharding(mesh, spec))
    shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), spec, is_leaf=_is_spec)
    return jax.device_put(tree, shardings)


def jit_sharded(fn: Callable, mesh: Mesh, spec: Any) -> Callable:
    """``jax.jit(fn)`` whose outputs are laid out by ``spec`` (as in :func:`put`); unlike
    ``put(fn(...))`` it works across processes, each computing and keeping its own shards."""
    if isinstance(spec, P):
        return jax.jit(fn, out_shardings=NamedSharding(mesh, spec))
    shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), spec, is_leaf=_is_spec)
    return jax.jit(fn, out_shardings=shardings)


def to_host(tree: Any) -> Any:
    """A pytree of (possibly sharded) arrays as whole numpy arrays, in every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def _is_spec(x: Any) -> bool:
    return isinstance(x, P)


def shard_jit(
    fn: Callable, mesh: Mesh, in_specs: Any, out_specs: Any, *, donate: tuple[int, ...] = ()
) -> Callable:
    """``jax.jit(jax.shard_map(fn))``: ``fn`` sees one device's slice of sharded inputs.

    Args:
        fn: the per-device function; may use ``lax.pmean(x, AXIS)``.
        mesh: from :func:`make_mesh`.
        in_specs / out_specs: PartitionSpecs (pytree prefixes of the inputs/outputs).
        donate: positional arguments whose buffers the call may reuse.
    """
    mapped = jax.shard_map(
        fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
    )
    return jax.jit(mapped, donate_argnums=donate)


def pmean(x: Any) -> Any:
    """Mean over devices of a pytree (inside :func:`shard_jit`)."""
    return jax.lax.pmean(x, AXIS)


def psum(x: Any) -> Any:
    """Sum over devices of a pytree (inside :func:`shard_jit`)."""
    return jax.lax.psum(x, AXIS)
