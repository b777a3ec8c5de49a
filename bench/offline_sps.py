"""Offline training speed: updates per second of each algorithm, in memory and streaming.

Writes a vault of random RWARE-tiny-2ag-shaped data (N=2 agents, 66 obs, 5 actions, state 132,
500-step episodes; ``--rows`` x ``--steps``), then for every registered discrete algorithm
(``marlvault.offline.train.ALGORITHMS``: BC feed-forward and recurrent, IQL+CQL, QMIX+CQL,
IQL+BCQ, QMIX+BCQ) at its default batch size and sequence length times ``--updates`` updates
after a warm-up (compilation excluded):

* memory: the whole dataset on the device, ``--updates`` updates sampled inside one ``lax.scan``;
* stream: ``Vault.iter_chunks`` -> windows -> shuffle buffer -> host batches -> jitted update.

Prints a markdown table. Usage::

    .venv/bin/python bench/offline_sps.py [--rows 16] [--steps 4000] [--updates 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from marlvault.offline.common import AlgorithmEntry, make_scan_train
from marlvault.offline.dataset import DatasetConfig, OfflineDataset
from marlvault.offline.train import ALGORITHMS
from marlvault.vault.vault import Vault

N, O, A, S, EPISODE = 2, 66, 5, 132, 500  # noqa: E741


def make_tree(rows: int, steps: int, seed: int = 0) -> dict:
    """Random data in the OG-MARL schema, truncated every ``EPISODE`` steps."""
    rng = np.random.default_rng(seed)
    trunc = np.zeros((rows, steps, N), np.float32)
    trunc[:, EPISODE - 1 :: EPISODE] = 1.0
    return {
        "observations": rng.random((rows, steps, N, O), np.float32),
        "actions": rng.integers(0, A, (rows, steps, N)).astype(np.int32),
        "rewards": (rng.random((rows, steps, N)) < 0.01).astype(np.float32),
        "terminals": np.zeros((rows, steps, N), np.float32),
        "truncations": trunc,
        "infos": {"legals": np.ones((rows, steps, N, A), np.float32),
                  "state": rng.random((rows, steps, S), np.float32)},
    }


def cases() -> dict[str, tuple[AlgorithmEntry, object]]:
    """Every registered discrete-action algorithm at its defaults (BC also recurrent); the
    continuous-only ones (``discrete_ok=False``) need float actions and are not benchmarked here."""
    out: dict[str, tuple[AlgorithmEntry, object]] = {}
    for name, entry in ALGORITHMS.items():
        if not entry.data_needs(entry.config()).discrete_ok:
            continue
        if name == "bc":
            out["bc (ff)"] = (entry, entry.config())
            out["bc (gru)"] = (entry, entry.config(recurrent=True))
        else:
            out[name] = (entry, entry.config())
    return out


def _dataset(entry: AlgorithmEntry, config, path: str, mode: str) -> OfflineDataset:
    needs = entry.data_needs(config)
    return OfflineDataset(path, DatasetConfig(
        seq_len=needs.seq_len, stride=needs.stride, mode=mode, need_state=needs.need_state,
        **({"shuffle_windows": 4096} if mode == "stream" else {}),
    ))  # fmt: skip


def bench_memory(entry: AlgorithmEntry, config, path: str, updates: int) -> tuple[float, object]:
    ds = _dataset(entry, config, path, "memory")
    algo = entry.make(config, ds.spec)
    run = jax.jit(make_scan_train(algo, ds.sampler(algo.batch_size), updates))
    data, state = ds.device_data(), algo.init(jax.random.key(0))
    state, _ = jax.block_until_ready(run(state, data, jax.random.key(1)))  # compile + warm up
    start = time.perf_counter()
    state, _ = jax.block_until_ready(run(state, data, jax.random.key(2)))
    return updates / (time.perf_counter() - start), algo


def bench_stream(entry: AlgorithmEntry, config, path: str, updates: int) -> float:
    ds = _dataset(entry, config, path, "stream")
    algo = entry.make(config, ds.spec)
    update = jax.jit(algo.update)
    batches = ds.batches(algo.batch_size, seed=0)
    state = algo.init(jax.random.key(0))
    for _ in range(3):
        state, _ = update(state, next(batches))
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(updates):
        state, _ = update(state, next(batches))
    jax.block_until_ready(state)
    return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.vlt")
        tree = make_tree(args.rows, args.steps)
        with Vault.create(path, tree) as vault:
            vault.append(tree)
        print(f"device: {jax.devices()[0].device_kind}  vault: {args.rows} rows x {args.steps} "
              f"steps, {sum(x.nbytes for x in jax.tree.leaves(tree)) / 2**20:.0f} MiB decoded  "
              f"updates timed: {args.updates}\n")
        print("| algorithm | batch (windows x steps) | memory updates/s | stream updates/s |")
        print("|---|---|---|---|")
        for name, (entry, config) in cases().items():
            mem, algo = bench_memory(entry, config, path, args.updates)
            stream = bench_stream(entry, config, path, args.updates)
            print(f"| {name} | {algo.batch_size} x {algo.seq_len} | {mem:,.1f} | {stream:,.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
