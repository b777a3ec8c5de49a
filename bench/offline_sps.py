"""Offline training speed: updates per second of each algorithm, in memory and streaming.

Writes a vault of random RWARE-tiny-2ag-shaped data (N=2 agents, 66 obs, 5 actions, state 132,
500-step episodes; ``--rows`` x ``--steps``) and its continuous twin (the same, with 5 float
actions in [-1, 1] and no legal masks), then for every registered algorithm
(``marlvault.offline.train.ALGORITHMS``: BC feed-forward and recurrent on both, the discrete
Q-learners and MAICQ on the discrete vault, the continuous actor-critics on the continuous one)
at its default batch size and sequence length times ``--updates`` updates after a warm-up
(compilation excluded), ``--repeats`` blocks of each mode alternated, the best of each reported
(on a shared machine the best block is the one least disturbed):

* memory: the whole dataset on the device, ``--updates`` updates sampled inside one ``lax.scan``;
* stream: ``Vault.iter_chunks`` -> windows -> shuffle buffer -> host batches -> the trainer's
  streaming updater (one jitted update per batch).

Random data barely compresses, so decoding it costs streaming more than a recorded vault does
(RWARE recordings compress ~37x); ``--vault PATH`` runs the algorithms for that vault's kind of
actions on it instead.

Prints a markdown table. Usage::

    .venv/bin/python bench/offline_sps.py [--rows 16] [--steps 4000] [--updates 200] [--repeats 3]
        [--only omar] [--vault PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from marlvault.errors import MarlvaultError
from marlvault.offline.common import AlgorithmEntry, make_scan_train
from marlvault.offline.dataset import DatasetConfig, OfflineDataset
from marlvault.offline.train import ALGORITHMS, _Updater
from marlvault.vault.vault import Vault

N, O, A, S, EPISODE = 2, 66, 5, 132, 500  # noqa: E741


def make_tree(rows: int, steps: int, seed: int = 0, continuous: bool = False) -> dict:
    """Random data in the OG-MARL schema, truncated every ``EPISODE`` steps (``continuous``:
    float actions ``[rows, steps, N, A]`` in [-1, 1] and no ``infos.legals``)."""
    rng = np.random.default_rng(seed)
    trunc = np.zeros((rows, steps, N), np.float32)
    trunc[:, EPISODE - 1 :: EPISODE] = 1.0
    if continuous:
        tree = make_tree(rows, steps, seed)
        tree["actions"] = rng.uniform(-1, 1, (rows, steps, N, A)).astype(np.float32)
        del tree["infos"]["legals"]
        return tree
    return {
        "observations": rng.random((rows, steps, N, O), np.float32),
        "actions": rng.integers(0, A, (rows, steps, N)).astype(np.int32),
        "rewards": (rng.random((rows, steps, N)) < 0.01).astype(np.float32),
        "terminals": np.zeros((rows, steps, N), np.float32),
        "truncations": trunc,
        "infos": {"legals": np.ones((rows, steps, N, A), np.float32),
                  "state": rng.random((rows, steps, S), np.float32)},
    }


def cases() -> dict[str, tuple[AlgorithmEntry, object, bool]]:
    """``label -> (entry, config, continuous data)``: every registered algorithm at its defaults
    (BC feed-forward and recurrent, on discrete and on continuous data)."""
    out: dict[str, tuple[AlgorithmEntry, object, bool]] = {}
    for name, entry in ALGORITHMS.items():
        if name == "bc":
            for cont in (False, True):
                kind = "continuous" if cont else "discrete"
                out[f"bc (ff, {kind})"] = (entry, entry.config(), cont)
                out[f"bc (gru, {kind})"] = (entry, entry.config(recurrent=True), cont)
        else:
            out[name] = (entry, entry.config(), not entry.data_needs(entry.config()).discrete_ok)
    return out


def _dataset(entry: AlgorithmEntry, config, path: str, mode: str) -> OfflineDataset:
    needs = entry.data_needs(config)
    ds = OfflineDataset(path, needs.dataset_config(
        mode=mode, **({"shuffle_windows": 4096} if mode == "stream" else {})))
    if needs.obs_stats:  # as offline/train.py's open_dataset (iddpg-bc's normalisation)
        ds.spec = dataclasses.replace(ds.spec, obs_stats=ds.obs_stats())
    return ds


def memory_runner(entry: AlgorithmEntry, config, path: str, updates: int):
    """``(run, algo)``: ``run()`` times ``updates`` updates sampled inside one ``lax.scan``
    (compiled and warmed up here)."""
    ds = _dataset(entry, config, path, "memory")
    algo = entry.make(config, ds.spec)
    step = jax.jit(make_scan_train(algo, ds.sampler(algo.batch_size), updates))
    data, state, key = ds.device_data(), algo.init(jax.random.key(0)), jax.random.key(1)
    state, _ = jax.block_until_ready(step(state, data, key))  # compile + warm up

    def run() -> float:
        nonlocal state, key
        key, sub = jax.random.split(key)
        start = time.perf_counter()
        state, _ = jax.block_until_ready(step(state, data, sub))
        return updates / (time.perf_counter() - start)

    return run, algo


def stream_runner(entry: AlgorithmEntry, config, path: str, updates: int):
    """``run()`` times the trainer's own streaming path (``offline/train.py``'s ``_Updater``:
    groups of host batches per jitted scan) for ``updates`` updates, after a warm-up block of
    the same size."""
    ds = _dataset(entry, config, path, "stream")
    algo = entry.make(config, ds.spec)
    updater = _Updater(algo, ds, seed=0)
    state = updater.init(jax.random.key(0))
    state, _ = updater.run(state, updates, jax.random.key(1))  # compile + warm up
    jax.block_until_ready(state)

    def run() -> float:
        nonlocal state
        start = time.perf_counter()
        state, _ = updater.run(state, updates, jax.random.key(2))
        jax.block_until_ready(state)
        return updates / (time.perf_counter() - start)

    return run


def write_vaults(folder: str, rows: int, steps: int) -> tuple[dict[bool, str], int]:
    """The bench's two vaults in ``folder``, discrete (``False``) and continuous (``True``):
    ``({continuous: path}, decoded bytes of the continuous one)``."""
    paths, nbytes = {}, 0
    for cont in (False, True):
        paths[cont] = str(Path(folder) / f"bench-{'cont' if cont else 'disc'}.vlt")
        tree = make_tree(rows, steps, continuous=cont)
        with Vault.create(paths[cont], tree) as vault:
            vault.append(tree)
        nbytes = sum(x.nbytes for x in jax.tree.leaves(tree))
    return paths, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed blocks of each mode, alternated; the best is reported")
    parser.add_argument("--only", nargs="+", help="algorithm names (default: all registered)")
    parser.add_argument("--vault", help="a recorded vault instead of the random ones (only the "
                        "algorithms for its kind of actions run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.vault:
            try:
                ds = OfflineDataset(args.vault, DatasetConfig(seq_len=1, continuous_ok=True))
            except MarlvaultError as err:
                parser.error(str(err))
            paths = {ds.spec.continuous: args.vault}
            where = (f"{args.vault}: {ds.spec.num_rows} rows x {ds.spec.num_steps} steps, "
                     f"{ds.nbytes / 2**20:.0f} MiB decoded")
        else:
            paths, nbytes = write_vaults(tmp, args.rows, args.steps)
            where = (f"vaults: {args.rows} rows x {args.steps} steps, {nbytes / 2**20:.0f} MiB "
                     "decoded")
        print(f"device: {jax.devices()[0].device_kind}  {where}  updates timed: {args.updates}\n")
        print("| algorithm | batch (windows x steps) | memory updates/s | stream updates/s | "
              "stream / memory |")
        print("|---|---|---|---|---|")
        for name, (entry, config, cont) in cases().items():
            if (args.only and entry.name not in args.only) or cont not in paths:
                continue
            path = paths[cont]
            run_memory, algo = memory_runner(entry, config, path, args.updates)
            run_stream = stream_runner(entry, config, path, args.updates)
            mem = stream = 0.0
            for _ in range(args.repeats):  # alternated, so both see the same load
                mem, stream = max(mem, run_memory()), max(stream, run_stream())
            print(f"| {name} | {algo.batch_size} x {algo.seq_len} | {mem:,.1f} | {stream:,.1f} | "
                  f"{stream / mem:.2f} |", flush=True)


if __name__ == "__main__":
    main()
