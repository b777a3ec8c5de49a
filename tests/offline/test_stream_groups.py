"""Streaming hands the update groups of host batches in one jitted scan: the same updates, on the
same batches, in the same order as one call per batch."""

from __future__ import annotations

import jax
import numpy as np

from marlvault.offline.train import _entry, _Updater, load_config, open_dataset
from marlvault.vault import Vault

from .helpers import synthetic_tree

TINY = ["system.hidden=8", "system.rnn_size=8", "system.seq_len=5", "system.batch_size=8",
        "data.mode=stream"]  # fmt: skip


def test_grouped_streaming_equals_one_update_per_batch(tmp_path):
    path = tmp_path / "v.vlt"
    with Vault.create(path, synthetic_tree(4, 64)) as v:
        v.append(synthetic_tree(4, 64))
    config = load_config("iql-cql", [f"vault={path}", *TINY])
    dataset = open_dataset("iql-cql", config)
    algo = _entry("iql-cql").make(config.system, dataset.spec)
    grouped, single = _Updater(algo, dataset, seed=3), _Updater(algo, dataset, seed=3)
    num = _Updater.GROUP + 3  # one group and a remainder
    start = grouped.init(jax.random.key(0))
    state, metrics = grouped.run(start, num, jax.random.key(1))
    ref, losses = start, []
    for _ in range(num):
        ref, m = single.update(ref, single.stream.batch())
        losses.append(float(m["loss"]))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["loss"]), np.mean(losses), rtol=1e-5)
