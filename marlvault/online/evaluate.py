"""Evaluation: many episodes in parallel, each env counted for its first episode only.

``E`` evaluation envs (split over the devices of the mesh) step together until every one has
finished its first episode; later episodes of the auto-resetting envs are ignored, so every
episode is scored exactly once and none is cut short. Actions are greedy (arg-max over legal
actions) or sampled. Episode return = sum over time of the mean agent reward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.envs.base import Array, MarlEnv, TimeStep
from marlvault.envs.vec import VecEnv, VecState
from marlvault.networks import MaskedCategorical
from marlvault.online import anakin
from marlvault.online.anakin import REPLICATED, SHARDED


class EvalMetrics(NamedTuple):
    """One entry per evaluation episode, ``[E]``."""

    episode_return: Array  # [E] float32
    episode_length: Array  # [E] int32
    win: Array  # [E] bool


class _Carry(NamedTuple):
    vstate: VecState  # [E_local]
    timestep: TimeStep  # [E_local, ...]
    key: Array  # [2] uint32
    finished: Array  # [E_local] bool
    result: EvalMetrics  # [E_local]
    steps: Array  # [] int32


def summarise(metrics: EvalMetrics) -> dict[str, float]:
    """Host-side mean/std/min/max of the returns, mean length and win rate."""
    ret = np.asarray(metrics.episode_return, dtype=np.float64)
    return {
        "return_mean": float(ret.mean()),
        "return_std": float(ret.std()),
        "return_min": float(ret.min()),
        "return_max": float(ret.max()),
        "length_mean": float(np.asarray(metrics.episode_length).mean()),
        "win_rate": float(np.asarray(metrics.win).mean()),
    }


def make_evaluator(
    env: MarlEnv,
    policy: Callable[[Any, Array], Array],
    num_episodes: int,
    *,
    mesh: jax.sharding.Mesh | None = None,
    greedy: bool = True,
) -> Callable[[Any, Array], EvalMetrics]:
    """Build ``evaluate(params, key) -> EvalMetrics [E]`` (jitted, sharded over the mesh).

    Args:
        env: the environment (one instance; it is batched here).
        policy: ``policy(params, obs [E, N, O] raw) -> logits [E, N, A]`` (unmasked).
        num_episodes: E, must split evenly over the mesh's devices.
        mesh: default all local devices.
        greedy: arg-max instead of sampling.

    Raises:
        ConfigError: if E does not split over the devices.
    """
    mesh = anakin.make_mesh() if mesh is None else mesh
    local = anakin.local_count(num_episodes, mesh, "arch.num_eval_episodes")
    vec = VecEnv(env, local)
    max_steps = env.spec.time_limit + 1

    def act(params: Any, ts: TimeStep, key: Array) -> Array:
        dist = MaskedCategorical.from_logits(policy(params, ts.obs), ts.legal)
        return dist.mode() if greedy else dist.sample(key)

    def body(params: Any, c: _Carry) -> _Carry:
        key, k_act = jax.random.split(c.key)
        vstate, out = vec.step(c.vstate, act(params, c.timestep, k_act))
        first = out.metrics.done & ~c.finished
        result = EvalMetrics(
            jnp.where(first, out.metrics.episode_return, c.result.episode_return),
            jnp.where(first, out.metrics.episode_length, c.result.episode_length),
            jnp.where(first, out.metrics.win, c.result.win),
        )
        return _Carry(vstate, out.timestep, key, c.finished | first, result, c.steps + 1)

    def evaluate_local(params: Any, key: Array) -> EvalMetrics:
        key = jax.random.fold_in(key, jax.lax.axis_index(anakin.AXIS))
        key, k_reset = jax.random.split(key)
        vstate, ts = vec.reset(k_reset)
        zeros = EvalMetrics(
            jnp.zeros(local, jnp.float32), jnp.zeros(local, jnp.int32), jnp.zeros(local, bool)
        )
        carry = _Carry(vstate, ts, key, jnp.zeros(local, bool), zeros, jnp.zeros((), jnp.int32))
        carry = jax.lax.while_loop(
            lambda c: ~jnp.all(c.finished) & (c.steps < max_steps),
            lambda c: body(params, c),
            carry,
        )
        return carry.result

    return anakin.shard_jit(evaluate_local, mesh, (REPLICATED, REPLICATED), SHARDED)
