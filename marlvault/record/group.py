"""Recording from a multi-process run: every process writes its own rows of one vault.

Process 0 starts tensorstore's OCDBT coordinator server and creates (or, with
``record.resume=true``, reopens) the vault; then every other process opens it as a member of
the same writer group (:mod:`marlvault.vault.shared`). The steps are separated by collective
status exchanges, so a failure in any process (a vault that already exists, another run's lock)
stops every process with the same error instead of leaving some waiting.

The learner's rollouts are global arrays split over every process's devices along the env
axis; :func:`local_parts` takes this process's shards, whose rows are exactly the rows this
process owns in the vault (devices are in process order).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from marlvault.errors import RecorderError
from marlvault.vault.shared import WriterGroup, start_coordinator


def _all_ok(ok: bool, what: str, detail: str) -> None:
    """Collective: raise in every process if ``ok`` is False in any (naming which)."""
    from jax.experimental import multihost_utils

    flags = np.asarray(multihost_utils.process_allgather(np.array([int(ok)], np.int32)))
    bad = [i for i, f in enumerate(flags.reshape(-1)) if not f]
    if bad and ok:
        raise RecorderError(
            f"{what}: expected every process to succeed, found process(es) {bad} failed (their "
            "own log says why); fix: see that message, then run again"
        )
    if bad:
        raise RecorderError(f"{what} failed in this process: {detail}")


def coordinator_host(dist: Any) -> str:
    """Where process 0's OCDBT coordinator listens: the host every process already reaches
    process 0 at (``dist.coordinator``, or the address ``jax.distributed`` found from the cluster
    launcher, e.g. SLURM's first node), else this machine's name."""
    address = getattr(dist, "coordinator", None)
    if not address:
        try:  # jax keeps the address it connected to; not a public API, hence the fallback
            from jax._src import distributed as jax_distributed

            address = jax_distributed.global_state.coordinator_address
        except (ImportError, AttributeError):
            address = None
    return address.rpartition(":")[0] if address else socket.gethostname()


def open_group_vault(
    path: str,
    example: Any,
    *,
    metadata: dict,
    resume: bool,
    host: str,
    wait_s: float,
    chunks: int | None = None,
) -> tuple[Any, Any, int]:
    """Create or reopen ``path`` as this process's part of a writer group.

    Returns:
        (the vault opened for appending, the coordinator server in process 0 (None elsewhere),
        the number of rows whose open episode was cut on resume).

    Raises:
        RecorderError: in every process, when any process failed (the failing one's message
            is chained as the cause).
    """
    from jax.experimental import multihost_utils

    from marlvault.vault import Vault

    me, count = jax.process_index(), jax.process_count()
    server = None
    header = np.zeros(2, np.int64)
    if me == 0:
        server, address = start_coordinator(host)
        header[:] = [int(address.rpartition(":")[2]), int.from_bytes(os.urandom(7), "little")]
    header = np.asarray(multihost_utils.broadcast_one_to_all(header))
    group = WriterGroup(me, count, f"{int(header[1]):x}", f"{host}:{int(header[0])}", wait_s)

    def step(what: str, fn: Callable[[], Any], mine: bool) -> Any:
        result, error = None, None
        if mine:
            try:
                result = fn()
            except Exception as err:  # reported to every process below
                error = err
        try:
            _all_ok(error is None, what, str(error))
        except RecorderError as collective:
            raise collective from error
        return result

    def leader_open() -> Any:
        return create_for_recording(path, example, metadata=metadata, resume=resume,
                                    chunks=chunks, group=group)  # fmt: skip

    # every process but 0: fail in bounded time, naming the address, if it cannot reach it
    step(f"{path}: reaching the vault's OCDBT coordinator at {group.coordinator}",
         lambda: _reach(group.coordinator, wait_s), me != 0)  # fmt: skip
    vault = step(f"{path}: process 0 creating the vault", leader_open, me == 0)
    try:
        member = step(f"{path}: opening the vault", lambda: Vault.open(path, "a", group=group),
                      me != 0)  # fmt: skip
        vault = vault if me == 0 else member
        cut = step(f"{path}: cutting open episodes to resume", vault.cut_tail, True) if resume else 0
    except BaseException:
        if vault is not None:
            vault.release()  # process 0's lock: a failed start leaves no lock behind
        raise
    return vault, server, int(cut or 0)


def create_for_recording(path: str, example: Any, *, metadata: dict, resume: bool,
                         chunks: int | None, group: WriterGroup | None = None) -> Any:
    """The vault a training run records into: new, or with ``resume`` an existing one.

    Raises:
        VaultExistsError: a vault is there and ``resume`` is off; the fix names
            ``record.resume=true``.
    """
    from marlvault.errors import VaultExistsError
    from marlvault.vault import Vault

    try:
        return Vault.create(path, example, metadata=metadata, group=group, exist_ok=resume,
                            chunks=chunks)  # fmt: skip
    except VaultExistsError:
        raise VaultExistsError(
            f"{path}: record.path expected no vault there, found one; fix: record.resume=true "
            "to append this run to it (its open episodes are cut first), or a new record.path"
        ) from None


def _reach(address: str, timeout_s: float) -> None:
    """Returns once the OCDBT coordinator at ``address`` accepts a TCP connection.

    Raises:
        DistributedError: not within ``timeout_s``; the message names the address and the fix.
    """
    from marlvault.distributed import wait_for_coordinator
    from marlvault.errors import DistributedError

    try:
        wait_for_coordinator(address, timeout_s)
    except DistributedError:
        raise DistributedError(
            f"record.path: expected the vault's OCDBT coordinator that process 0 started at "
            f"{address} to answer within dist.timeout_s={timeout_s:g} s, found no answer; fix: "
            "let every process reach process 0's host on that port (it is chosen at random; "
            "open the range between the nodes), or record from a one-process run"
        ) from None


def local_parts(tree: Any) -> tuple[list[Any], Any]:
    """This process's shards of a pytree of global arrays, for the recorder.

    Returns:
        (one fully-addressable pytree per local shard, in row order; a matching pytree of ints:
        the axis a leaf is split along (to concatenate), or -1 for a replicated leaf (to take
        from the first part)).
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    per_leaf, split = [], []
    for leaf in leaves:
        shards = list(leaf.addressable_shards)
        axis = _split_axis(shards[0].index, leaf.ndim)
        split.append(-1 if axis is None else axis)
        if axis is None:
            per_leaf.append([shards[0].data] * len(shards))
            continue
        shards.sort(key=lambda s: s.index[axis].start or 0)
        per_leaf.append([s.data for s in shards])
    count = len(per_leaf[0]) if per_leaf else 0
    parts = [treedef.unflatten([p[k] for p in per_leaf]) for k in range(count)]
    return parts, treedef.unflatten(split)


def _split_axis(index: tuple, ndim: int) -> int | None:
    for axis, sl in enumerate(index[:ndim]):
        if isinstance(sl, slice) and (sl.start not in (None, 0) or sl.stop is not None):
            return axis
    return None


def merge_parts(parts: list[Any], split: Any) -> Any:
    """Host side of :func:`local_parts`: concatenate split leaves along their axis, take
    replicated ones from the first part."""

    def merge(axis: int, *leaves: Any) -> Any:
        return leaves[0] if axis < 0 else np.concatenate(leaves, axis=axis)

    return jax.tree_util.tree_map(merge, split, *parts)
