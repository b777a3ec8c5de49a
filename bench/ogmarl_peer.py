"""marlvault against OG-MARL's JAX systems on the same one-row vault, side by side in one run.

The peer is OG-MARL's last JAX BC and MAICQ (``og_marl/jax/systems/{bc,maicq}.py``, commit
``0d1a26a``; later commits keep only Oryx in JAX), installed in its own virtual environment and
launched from here as a subprocess (``bench/ogmarl_side.py``; nothing of OG-MARL is imported
into marlvault's process). Both sides train on the same data with the same batch (32 windows),
window (20 steps) and network (MLP 64 -> GRU 64 -> logits). Two numbers per side:

* **as run**: updates per second of a whole run of ``--epochs`` x ``--steps-per-epoch`` updates as
  each project runs it, from opening the dataset to the last update, compilation included.
  OG-MARL: its ``train_<system>_system`` (a new ``train_epoch`` each epoch: BC is traced and
  compiled again every epoch). marlvault: what ``offline/train.py`` does between evaluations
  (open the dataset, put it on the device, initialise, one jitted ``lax.scan`` of ``--steps-per-epoch``
  updates called once per epoch).
* **update work**: updates per second of ``--updates`` updates (sampling included) in one jitted
  ``lax.scan`` after a warm-up call, compilation excluded; the best of ``--calls`` calls.
  OG-MARL: its own ``train_step``, caught as its last epoch scanned it.

Each side runs ``--repeats`` times, alternating, and the best of each is kept. Both clocks are
reported: wall seconds, and CPU seconds of the process (all its threads; steadier than wall time
when the machine is shared: the load average at the start is printed). Prints a markdown table with the ratios marlvault / OG-MARL.

The one-row vault: ``--vault PATH`` (``B == 1``, e.g. from ``marlvault vault export SRC DEST
--layout og-marl``) or, by default, random RWARE-tiny-2ag-shaped data (``bench/offline_sps.py``'s
``make_tree``; N=2, 66 obs, 5 actions, state 132, 500-step episodes) of ``--steps`` steps.

Usage (OG-MARL set up as in docs/BENCHMARKS.md, "Against OG-MARL's JAX BC")::

    .venv/bin/python bench/ogmarl_peer.py --ogmarl-python /work/ogmarl-venv/bin/python
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from marlvault.offline.common import make_scan_train
from marlvault.offline.dataset import OfflineDataset
from marlvault.offline.train import ALGORITHMS
from marlvault.schema import ACTIONS, LEGALS, OBS, REWARDS, STATE, TERMINALS
from marlvault.vault.vault import Vault

sys.path.insert(0, str(Path(__file__).parent))
from offline_sps import make_tree  # noqa: E402

BATCH, WINDOW, WIDTH = 32, 20, 64
SIDE = Path(__file__).with_name("ogmarl_side.py")


class Peer(NamedTuple):
    """One comparison: a marlvault algorithm and the OG-MARL system it is measured against."""

    algorithm: str  # key of marlvault.offline.train.ALGORITHMS
    overrides: dict  # its ``system`` fields (those its Config has are used)
    ogmarl_system: str  # ``--system`` of bench/ogmarl_side.py


MATCHED = {"hidden": (WIDTH,), "rnn_size": WIDTH, "seq_len": WINDOW, "batch_size": BATCH}
PEERS = {
    "bc": Peer("bc", {"recurrent": True, **MATCHED}, "bc"),
    "maicq": Peer("maicq", dict(MATCHED), "maicq"),
}
"""Add a comparison here; one whose marlvault algorithm is not registered runs OG-MARL only.
OG-MARL's MAICQ defaults besides these: critic MLP 64 -> GRU 64, mixer embedding 32 and
hypernetwork 64, target update rate 0.005, discount 0.99, advantage beta 0.1, target beta 1e3;
give marlvault's MAICQ the matching fields here once it is registered."""


def _config(peer: Peer):
    entry = ALGORITHMS[peer.algorithm]
    names = {f.name for f in dataclasses.fields(entry.config)}
    return entry, entry.config(**{k: v for k, v in peer.overrides.items() if k in names})


def _dataset(entry, config, path: str) -> OfflineDataset:
    needs = entry.data_needs(config)
    return OfflineDataset(path, needs.dataset_config(mode="memory"))


def marlvault_as_run(peer: Peer, path: str, epochs: int, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of a run as ``offline/train.py`` trains (evaluations left out)."""
    start, cpu = time.perf_counter(), time.process_time()
    entry, config = _config(peer)
    ds = _dataset(entry, config, path)
    algo = entry.make(config, ds.spec)
    data, key = ds.device_data(), jax.random.key(0)
    key, init_key = jax.random.split(key)
    state = jax.jit(algo.init)(init_key)  # as offline/train.py
    run = jax.jit(make_scan_train(algo, ds.sampler(algo.batch_size), steps))
    for _ in range(epochs):
        key, run_key = jax.random.split(key)
        state, metrics = run(state, data, run_key)
        jax.block_until_ready((state, metrics))
    return time.perf_counter() - start, time.process_time() - cpu


def marlvault_work(peer: Peer, path: str, updates: int, calls: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``updates`` updates in one jitted scan after a warm-up call (the
    best of ``calls`` calls of each)."""
    entry, config = _config(peer)
    ds = _dataset(entry, config, path)
    algo = entry.make(config, ds.spec)
    run = jax.jit(make_scan_train(algo, ds.sampler(algo.batch_size), updates))
    data, state = ds.device_data(), algo.init(jax.random.key(0))
    state, _ = jax.block_until_ready(run(state, data, jax.random.key(1)))
    best, best_cpu = math.inf, math.inf
    for call in range(calls):
        start, cpu = time.perf_counter(), time.process_time()
        state, _ = jax.block_until_ready(run(state, data, jax.random.key(2 + call)))
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def ogmarl_run(python: str, system: str, npz: str, workdir: str, args) -> dict:
    """One run of bench/ogmarl_side.py in OG-MARL's environment; its JSON line."""
    out = subprocess.run(
        [python, str(SIDE), "--data", npz, "--workdir", workdir, "--system", system,
         "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch),
         "--updates", str(args.updates), "--calls", str(args.calls), "--batch-size", str(BATCH), "--seq-len", str(WINDOW)],
        capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"OG-MARL side failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_peer_data(path: str, npz: str) -> tuple[int, int]:
    """The vault's arrays in the form bench/ogmarl_side.py reads; (rows, steps)."""
    vault = Vault.open(path, mode="r")
    try:
        tree = vault.read(stop=int(vault.num_steps))
    finally:
        vault.close()
    obs = np.asarray(tree[OBS.split(".")[0]], np.float32)
    rows, steps, n = obs.shape[:3]
    if rows != 1:
        raise SystemExit(f"{path}: expected a one-row vault (B == 1, as OG-MARL reads), got "
                         f"B = {rows}; make one with `marlvault vault export SRC DEST --layout "
                         "og-marl`")
    infos = tree.get("infos", {})
    legals = infos.get(LEGALS.split(".")[-1])
    actions = np.asarray(tree[ACTIONS], np.int32)
    if legals is None:
        legals = np.ones((*actions.shape, int(actions.max()) + 1), np.float32)
    state = infos.get(STATE.split(".")[-1])
    terminals = np.asarray(tree[TERMINALS], np.float32)
    np.savez(npz, observations=obs, actions=actions,
             rewards=np.asarray(tree[REWARDS], np.float32).reshape(rows, steps, n),
             terminals=terminals.max(axis=2) if terminals.ndim == 3 else terminals,
             legals=np.asarray(legals, np.float32),
             state=np.zeros((rows, steps, 1), np.float32) if state is None else
             np.asarray(state, np.float32).reshape(rows, steps, -1))
    return rows, steps


def _rates(times: list[tuple[float, float]], updates: int) -> tuple[float, float]:
    """Updates per wall second and per CPU second, each from its best run."""
    return updates / min(t[0] for t in times), updates / min(t[1] for t in times)


def _row(name: str, mv: tuple | None, og: tuple) -> str:
    cells = [name]
    for i in range(2):
        if mv is None:
            cells += ["(not in marlvault)", f"{og[i]:,.0f}", ""]
        else:
            cells += [f"{mv[i]:,.0f}", f"{og[i]:,.0f}", f"{mv[i] / og[i]:.2f}x"]
    return "| " + " | ".join(cells) + " |"


def compare(name: str, peer: Peer, path: str, npz: str, tmp: str, args) -> str:
    have = peer.algorithm in ALGORITHMS
    mv_run, mv_work, og_run, og_work = [], [], [], []
    for rep in range(args.repeats):
        if have:
            mv_run.append(marlvault_as_run(peer, path, args.epochs, args.steps_per_epoch))
            mv_work.append(marlvault_work(peer, path, args.updates, args.calls))
        side = ogmarl_run(args.ogmarl_python, peer.ogmarl_system, npz,
                          tempfile.mkdtemp(dir=tmp), args)
        og_run.append((side["as_run_s"], side["as_run_cpu_s"]))
        og_work.append((side["work_s"], side["work_cpu_s"]))
        if rep == 0:
            print(f"<!-- OG-MARL side: {json.dumps(side['versions'])} -->", file=sys.stderr)
    total = args.epochs * args.steps_per_epoch
    og_run, og_work = _rates(og_run, total), _rates(og_work, args.updates)
    mv_run = _rates(mv_run, total) if have else None
    mv_work = _rates(mv_work, args.updates) if have else None
    return "\n".join([
        _row(f"{name}, wall", mv_run and (mv_run[0], mv_work[0]), (og_run[0], og_work[0])),
        _row(f"{name}, CPU", mv_run and (mv_run[1], mv_work[1]), (og_run[1], og_work[1])),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ogmarl-python", required=True,
                        help="python of the virtual environment OG-MARL is installed in")
    parser.add_argument("--vault", help="a one-row vault (default: random data, --steps steps)")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs of the as-run comparison (OG-MARL's launcher: 10)")
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=500, help="updates per timed call")
    parser.add_argument("--calls", type=int, default=5, help="timed calls (best kept)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--systems", nargs="+", default=["bc"], choices=sorted(PEERS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.vault
        if path is None:
            path = str(Path(tmp) / "peer.vlt" / "Random")
            tree = make_tree(1, args.steps)
            with Vault.create(path, tree) as vault:
                vault.append(tree)
        npz = str(Path(tmp) / "peer.npz")
        rows, steps = write_peer_data(path, npz)
        print(f"device: {jax.devices()[0].device_kind}  vault: {rows} row x {steps} steps  "
              f"batch {BATCH} windows x {WINDOW} steps, MLP {WIDTH} -> GRU {WIDTH}  as run: "
              f"{args.epochs} x {args.steps_per_epoch} updates, best of {args.repeats}  update "
              f"work: best of {args.repeats} x {args.calls} calls of {args.updates} updates  "
              f"load average at start: {os.getloadavg()[0]:.1f}\n")
        print("| system, clock | marlvault as run (updates/s) | OG-MARL as run | ratio | "
              "marlvault update work (updates/s) | OG-MARL update work | ratio |")
        print("|---|---|---|---|---|---|---|")
        for name in args.systems:
            print(compare(name, PEERS[name], path, npz, tmp, args), flush=True)


if __name__ == "__main__":
    main()
