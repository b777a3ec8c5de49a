"""Environment steps per second of ``VecEnv``, naive vs fast auto-reset.

Usage: ``python bench/env_sps.py [--steps 1000] [--repeats 5]``. Env steps count every env:
``num_envs * num_steps`` per run. Actions are uniformly random among the legal ones, the rollout
is one jitted ``lax.scan``, compilation is excluded (one warm-up call) and the clock stops after
``block_until_ready``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from marlvault.envs.registry import make_env
from marlvault.envs.vec import VecEnv
from marlvault.networks import ActionSpace


def random_legal_actions(key: jax.Array, legal: jax.Array) -> jax.Array:
    """Samples uniformly among legal actions.

    Args:
        key: PRNG key.
        legal: [..., A] bool legal mask (at least one True per row).

    Returns:
        [...] int32 actions.
    """
    logits = jnp.where(legal, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


def make_rollout(venv: VecEnv, num_steps: int):
    """Returns a jitted ``rollout(key) -> (total reward, episodes finished)`` of uniformly random
    actions (legal ones; continuous: uniform in the action box)."""
    space = ActionSpace.of(venv.spec)

    def rollout(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        reset_key, act_key = jax.random.split(key)
        vstate, ts = venv.reset(reset_key)

        def body(carry, step_key):
            vstate, legal = carry
            if space.continuous:
                actions = space.to_env(space.uniform_raw(step_key, legal))
            else:
                actions = random_legal_actions(step_key, legal)
            vstate, out = venv.step(vstate, actions)
            stats = (out.timestep.reward.sum(), out.metrics.done.sum())
            return (vstate, out.timestep.legal), stats

        keys = jax.random.split(act_key, num_steps)
        _, (rewards, dones) = jax.lax.scan(body, (vstate, ts.legal), keys)
        return rewards.sum(), dones.sum()

    return jax.jit(rollout)


def _prepare(env_name: str, scenario: str, num_envs: int, num_steps: int, autoreset: str):
    """Builds and compiles the rollout; returns a function timing one run in seconds."""
    venv = VecEnv(make_env(env_name, scenario), num_envs, autoreset=autoreset)
    rollout = make_rollout(venv, num_steps)
    jax.block_until_ready(rollout(jax.random.PRNGKey(0)))  # compile + warm up

    def timed(seed: int) -> float:
        start = time.perf_counter()
        jax.block_until_ready(rollout(jax.random.PRNGKey(seed)))
        return time.perf_counter() - start

    return timed


def measure_env_sps(
    env_name: str,
    scenario: str,
    num_envs: int,
    num_steps: int,
    autoreset: str = "fast",
    repeats: int = 3,
) -> float:
    """Measures env steps per second (best of ``repeats`` runs, compilation excluded).

    Args:
        env_name: registry name, e.g. "rware".
        scenario: scenario name, e.g. "tiny-2ag".
        num_envs: B.
        num_steps: scan length per run.
        autoreset: "fast", "batch" or "naive".
        repeats: timed runs; the fastest is reported (the machine may be shared).

    Returns:
        num_envs * num_steps / seconds.
    """
    timed = _prepare(env_name, scenario, num_envs, num_steps, autoreset)
    best = min(timed(i + 1) for i in range(repeats))
    return num_envs * num_steps / best


def compare_autoreset(
    env_name: str,
    scenario: str,
    num_envs: int,
    num_steps: int,
    repeats: int = 3,
    schemes: tuple[str, ...] = ("naive", "batch", "fast"),
) -> dict[str, float]:
    """Steps per second of several schemes, timed alternately so that load changes hit all.

    Returns:
        {scheme: sps} (best of ``repeats`` each).
    """
    timers = {s: _prepare(env_name, scenario, num_envs, num_steps, s) for s in schemes}
    best = {s: float("inf") for s in timers}
    for i in range(repeats):
        for scheme, timed in timers.items():
            best[scheme] = min(best[scheme], timed(i + 1))
    return {s: num_envs * num_steps / t for s, t in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="rware")
    parser.add_argument("--scenario", default="tiny-2ag")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 32, 64])
    args = parser.parse_args()
    print(f"{args.env}/{args.scenario}, {args.steps} steps per run, best of {args.repeats}, "
          f"device {jax.devices()[0].platform}")
    print(f"{'envs':>6} {'naive sps':>12} {'batch sps':>12} {'fast sps':>12} {'fast/naive':>11}")
    for b in args.num_envs:
        sps = compare_autoreset(args.env, args.scenario, b, args.steps, args.repeats)
        naive, batch, fast = sps["naive"], sps["batch"], sps["fast"]
        print(
            f"{b:>6} {naive:>12,.0f} {batch:>12,.0f} {fast:>12,.0f} {fast / naive:>10.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
