"""Steady-state PPO training SPS vs raw environment SPS, and a rollout/update split.

Usage: ``python bench/ippo_sps.py [--system ippo|mappo|rec-ippo|rec-mappo] [--env rware
--scenario tiny-2ag] [--num-envs 16 32 64] [--updates 4] [--repeats 3] [--skip-naive]``

For each env count, with the system's preset hyperparameters (IPPO: rollout 128, 4 epochs,
2 minibatches, MLP 128-128; rec-IPPO: the same with MLP 128 -> GRU 128 -> MLP 128) on the chosen
environment (default RWARE tiny-2ag):

* **train SPS**: env steps per second of the jitted learner call (``--updates`` updates per
  call), compiled ahead of time, best of ``--repeats`` timed calls after one warm-up call;
* **env SPS**: ``bench/env_sps.py``'s ``measure_env_sps`` with the same env count and the same
  ("fast") auto-reset, random legal actions, ``128 * --updates`` steps per run;
* **rollout / update**: one update's wall time split into the rollout (a jitted rollout-only
  call with the same parameters) and the rest (GAE + 4 epochs x 2 minibatches);
* **train SPS, naive reset**: the learner with the per-env ``cond`` auto-reset, for the gain.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).parent))
from env_sps import measure_env_sps  # noqa: E402

from marlvault import config  # noqa: E402
from marlvault.envs.registry import make_env  # noqa: E402
from marlvault.envs.vec import VecEnv  # noqa: E402
from marlvault.online import anakin, ippo, rec_ippo  # noqa: E402

SYSTEMS = {
    "ippo": (ippo, "ippo", []),
    "mappo": (ippo, "ippo", ["system.centralised_critic=true"]),
    "rec-ippo": (rec_ippo, "rec_ippo", []),
    "rec-mappo": (rec_ippo, "rec_ippo", ["system.centralised_critic=true"]),
}
"""System name -> (learner module, preset, overrides)."""


def _best(fn, state, repeats: int):
    """Best wall time of ``repeats`` calls of ``fn(state) -> (state, ...)``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(state)
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - start)
        state = out[0]
    return best, state


def train_sps(module, cfg: ippo.Config, updates: int, repeats: int, autoreset: str = "fast"):
    """(train SPS, learner) for ``updates`` updates per call."""
    learner = module.make_train(cfg, updates_per_call=updates, autoreset=autoreset)
    state = learner.init(jax.random.PRNGKey(0))
    learn = learner.learn.lower(state).compile()
    state, *_ = jax.block_until_ready(learn(state))  # warm-up
    best, state = _best(learn, state, repeats)
    return updates * cfg.steps_per_update / best, learner, state


def rollout_seconds(module, cfg, learner: ippo.Learner, state, repeats: int) -> float:
    """Best wall time of one rollout-only call (T steps of every env, actor + critic)."""
    local = anakin.local_count(cfg.arch.num_envs, learner.mesh, "arch.num_envs")
    rollout = module.make_rollout(
        VecEnv(make_env(cfg.env.env_name, cfg.env.scenario), local), learner.nets, cfg
    )

    def run(state):
        state, traj, (last, metrics) = rollout(state.params, state)
        return state, traj, last

    specs = (module.LEARNER_SPECS, P(None, anakin.AXIS), anakin.SHARDED)
    fn = anakin.shard_jit(run, learner.mesh, (module.LEARNER_SPECS,), specs)
    state, *_ = jax.block_until_ready(fn(state))
    best, _ = _best(fn, state, repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="ippo", choices=sorted(SYSTEMS))
    parser.add_argument("--env", default="rware")
    parser.add_argument("--scenario", default="tiny-2ag")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive-reset column")
    args = parser.parse_args()
    module, preset, extra = SYSTEMS[args.system]
    print(f"{args.system} {args.env}/{args.scenario}, preset hyperparameters, {args.updates} updates per "
          f"call, best of {args.repeats}; {len(jax.devices())} x {jax.devices()[0].platform}, "
          f"{platform.processor() or platform.machine()}, jax {jax.__version__}\n")
    print("| envs | train SPS | env SPS | train/env | rollout ms | update ms | rollout share "
          "| train SPS (naive reset) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in args.num_envs:
        cfg = config.load(module.Config, preset, [*extra, f"env={args.env}",
                                                  f"scenario={args.scenario}", f"arch.num_envs={b}"])  # fmt: skip
        sps, learner, state = train_sps(module, cfg, args.updates, args.repeats)
        env = measure_env_sps(args.env, args.scenario, b, cfg.system.rollout_length *
                              args.updates, "fast", args.repeats)  # fmt: skip
        per_update = cfg.steps_per_update / sps
        roll = rollout_seconds(module, cfg, learner, state, args.repeats)
        naive = "-"
        if not args.skip_naive:
            naive = f"{train_sps(module, cfg, args.updates, args.repeats, 'naive')[0]:,.0f}"
        print(f"| {b} | {sps:,.0f} | {env:,.0f} | {sps / env:.2f} | {roll * 1e3:.0f} | "
              f"{(per_update - roll) * 1e3:.0f} | {roll / per_update:.0%} | {naive} |", flush=True)


if __name__ == "__main__":
    main()
