"""Subprocess worker: data-parallel offline updates on the devices this process sees.

Usage: python -m tests.offline.parallel_worker JOB [JOB ...], each JOB one argument of words
``VAULT ALGO MODES UPDATES [KEY=VALUE ...]`` (MODES: memory,stream; KEY=VALUE: config overrides,
e.g. system.hidden=8). The jobs run one after the other in this process (one start-up, one
device set-up for all). For every job and mode it prints ``job I`` and ``devices ...``, then
``replicas identical`` when every device holds the same state after the updates (the gradients
were averaged), and ``moved`` when the parameters changed.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

from marlvault.offline import parallel
from marlvault.offline.train import _entry, _ParallelUpdater, load_config, open_dataset


def _raw(leaf: jax.Array) -> jax.Array:
    """A typed PRNG key (the actor-critics carry one) as its integer data; other leaves as is."""
    return jax.random.key_data(leaf) if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) \
        else leaf


def main(vault: str, algo: str, mode: str, updates: int, overrides: list[str]) -> None:
    config = load_config(algo, [f"vault={vault}", f"data.mode={mode}", *overrides])
    dataset = open_dataset(algo, config)
    algorithm = _entry(algo).make(config.system, dataset.spec)
    mesh = parallel.make_mesh()
    updater = _ParallelUpdater(algorithm, dataset, 0, mesh)
    start = updater.init(jax.random.key(0))
    state, metrics = updater.run(start, updates, jax.random.key(1))
    print("devices", mesh.size, "shares", updater.shares, "mode", dataset.mode)
    same = all(
        np.array_equal(np.asarray(s.data), np.asarray(leaf.addressable_shards[0].data))
        for leaf in jax.tree.leaves(jax.tree.map(_raw, state))
        for s in leaf.addressable_shards
    )
    print("replicas identical" if same else "replicas differ")
    before = jax.tree.leaves(parallel.to_local(algorithm.params(start)))
    after = jax.tree.leaves(parallel.to_local(algorithm.params(state)))
    if any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)):
        print("moved")
    print("metrics", {k: round(float(v), 4) for k, v in metrics.items()})


if __name__ == "__main__":
    for number, job in enumerate(sys.argv[1:]):
        vault, algo, modes, updates, *overrides = job.split()
        for one in modes.split(","):
            print("job", number, flush=True)
            main(vault, algo, one, int(updates), overrides)
