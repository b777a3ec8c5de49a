"""Subprocess worker: data-parallel offline updates on the devices this process sees.

Usage: python -m tests.offline.parallel_worker VAULT ALGO MODES UPDATES  (MODES: memory,stream)
Prints ``replicas identical`` when every device holds the same state after the updates (the
gradients were averaged), and ``moved`` when the parameters changed.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

from marlvault.offline import parallel
from marlvault.offline.train import _entry, _ParallelUpdater, load_config, open_dataset


def main(vault: str, algo: str, mode: str, updates: int) -> None:
    config = load_config(algo, [f"vault={vault}", f"data.mode={mode}"])
    dataset = open_dataset(algo, config)
    algorithm = _entry(algo).make(config.system, dataset.spec)
    mesh = parallel.make_mesh()
    updater = _ParallelUpdater(algorithm, dataset, 0, mesh)
    start = updater.init(jax.random.key(0))
    state, metrics = updater.run(start, updates, jax.random.key(1))
    print("devices", mesh.size, "shares", updater.shares, "mode", dataset.mode)
    same = all(
        np.array_equal(np.asarray(s.data), np.asarray(leaf.addressable_shards[0].data))
        for leaf in jax.tree.leaves(state)
        for s in leaf.addressable_shards
    )
    print("replicas identical" if same else "replicas differ")
    before = jax.tree.leaves(parallel.to_local(algorithm.params(start)))
    after = jax.tree.leaves(parallel.to_local(algorithm.params(state)))
    if any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)):
        print("moved")
    print("metrics", {k: round(float(v), 4) for k, v in metrics.items()})


if __name__ == "__main__":
    for one in sys.argv[3].split(","):
        main(sys.argv[1], sys.argv[2], one, int(sys.argv[4]))
