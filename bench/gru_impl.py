"""ScannedRNN as it is against the flax ``nn.scan(GRUCell)`` it replaced, side by side in one process.

Both GRUs have the same parameters and arithmetic (tests/test_networks.py); this measures only
how fast XLA CPU runs them inside whole updates:

* ``--offline bc maicq``: update work of marlvault's recurrent BC / MAICQ on
  ``bench/ogmarl_peer.py``'s setting (one-row random RWARE-tiny-2ag-shaped vault of 10,000 steps,
  32 windows x 20 steps, MLP 64 -> GRU 64): ``--updates`` updates (sampling included) in one
  jitted ``lax.scan``, compilation excluded, best of ``--rounds`` alternated calls; wall and
  process CPU milliseconds per update.
* ``--online rec-ippo``: ``bench/ippo_sps.py``'s train SPS of rec-IPPO on ``--env/--scenario``
  with ``--num-envs`` envs, ``--ppo-updates`` updates per call, best of ``--rounds`` alternated
  calls.

Usage: ``python bench/gru_impl.py --offline bc maicq --online rec-ippo``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from ippo_sps import SYSTEMS  # noqa: E402
from offline_sps import make_tree  # noqa: E402
from ogmarl_peer import PEERS, _config, _dataset  # noqa: E402

from marlvault import config, networks  # noqa: E402
from marlvault.offline.common import make_scan_train  # noqa: E402
from marlvault.vault.vault import Vault  # noqa: E402


class _ResetGRU(nn.Module):  # the class name gives the parameters their scope, as before
    hidden_size: int

    @nn.compact
    def __call__(self, h, inputs):
        x, reset = inputs
        h = jnp.where(reset[..., None], jnp.zeros_like(h), h)
        return nn.GRUCell(self.hidden_size)(h, x)


class ScannedRNN(nn.Module):  # same class name: same parameter path (ScannedRNN_0)
    """ScannedRNN before 2026-11-30: flax's GRUCell under ``nn.scan``."""

    hidden_size: int = 128

    @nn.compact
    def __call__(self, h, inputs):
        return nn.scan(_ResetGRU, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=0, out_axes=0)(self.hidden_size)(h, inputs)

    initialize_carry = staticmethod(networks.ScannedRNN.initialize_carry)


IMPLS = {"flax nn.scan(GRUCell)": ScannedRNN, "ScannedRNN (now)": networks.ScannedRNN}


def _use(name: str) -> None:
    """Networks built (traced) after this call use GRU ``name``."""
    networks.ScannedRNN = IMPLS[name]


def offline(systems: list[str], updates: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "peer.vlt" / "Random")
        tree = make_tree(1, 10_000)
        with Vault.create(path, tree) as vault:
            vault.append(tree)
        runs = {}
        for system in systems:
            entry, cfg = _config(PEERS[system])
            ds = _dataset(entry, cfg, path)
            algo = entry.make(cfg, ds.spec)
            data = ds.device_data()
            for name in IMPLS:
                _use(name)
                run = jax.jit(make_scan_train(algo, ds.sampler(algo.batch_size), updates))
                state, _ = jax.block_until_ready(run(algo.init(jax.random.key(0)), data,
                                                     jax.random.key(1)))
                runs[system, name] = [run, state, data, float("inf"), float("inf")]
        for r in range(rounds):
            for v in runs.values():
                start, cpu = time.perf_counter(), time.process_time()
                v[1], _ = jax.block_until_ready(v[0](v[1], v[2], jax.random.key(2 + r)))
                v[3] = min(v[3], time.perf_counter() - start)
                v[4] = min(v[4], time.process_time() - cpu)
        print("| system | GRU | update work wall ms | updates/s | CPU ms per update |")
        print("|---|---|---:|---:|---:|")
        for (system, name), v in runs.items():
            print(f"| {system} | {name} | {v[3] / updates * 1e3:.2f} | {updates / v[3]:,.0f} | "
                  f"{v[4] / updates * 1e3:.2f} |")


def online(system: str, env: str, scenario: str, num_envs: int, updates: int, rounds: int) -> None:
    module, preset, extra = SYSTEMS[system]
    cfg = config.load(module.Config, preset, [*extra, f"env={env}", f"scenario={scenario}",
                                              f"arch.num_envs={num_envs}"])
    runs = {}
    for name in IMPLS:
        _use(name)
        learner = module.make_train(cfg, updates_per_call=updates, autoreset="fast")
        state = learner.init(jax.random.PRNGKey(0))
        learn = learner.learn.lower(state).compile()
        state, *_ = jax.block_until_ready(learn(state))
        runs[name] = [learn, state, float("inf")]
    for _ in range(rounds):
        for v in runs.values():
            start = time.perf_counter()
            out = jax.block_until_ready(v[0](v[1]))
            v[2], v[1] = min(v[2], time.perf_counter() - start), out[0]
    print(f"\n| {system} {env}/{scenario}, {num_envs} envs | GRU | train SPS | ms per update |")
    print("|---|---|---:|---:|")
    for name, v in runs.items():
        print(f"| | {name} | {updates * cfg.steps_per_update / v[2]:,.0f} | "
              f"{v[2] / updates * 1e3:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", nargs="*", default=["bc", "maicq"], choices=sorted(PEERS))
    parser.add_argument("--online", nargs="*", default=[], choices=sorted(SYSTEMS))
    parser.add_argument("--updates", type=int, default=300, help="offline updates per call")
    parser.add_argument("--rounds", type=int, default=6, help="timed calls of each (best kept)")
    parser.add_argument("--env", default="smax")
    parser.add_argument("--scenario", default="3m")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--ppo-updates", type=int, default=2)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}; jax {jax.__version__}\n")
    if args.offline:
        offline(args.offline, args.updates, args.rounds)
    for system in args.online:
        online(system, args.env, args.scenario, args.num_envs, args.ppo_updates, args.rounds)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
