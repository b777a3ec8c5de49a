"""Evaluation of online policies (feed-forward or recurrent), sharded over the mesh's devices.

The loop is :func:`marlvault.evaluation.first_episodes` (each env scored on its first episode);
this module supplies the act step: greedy (arg-max over legal actions; continuous: the squashed
mean) or sampled from the distribution of ``policy(params, obs)``, with the ``E`` envs split over
the mesh's devices. A recurrent policy (``init_hidden`` given) carries its hidden state through
the loop and resets it where an episode starts (``step_count == 0``), as in training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from marlvault.envs.base import Array, MarlEnv, TimeStep
from marlvault.envs.vec import VecEnv
from marlvault.evaluation import EvalMetrics, first_episodes, summarise
from marlvault.networks import ActionSpace
from marlvault.online import anakin
from marlvault.online.anakin import REPLICATED, SHARDED


def make_evaluator(
    env: MarlEnv,
    policy: Callable[[Any, Array], Array],
    num_episodes: int,
    *,
    mesh: jax.sharding.Mesh | None = None,
    greedy: bool = True,
    init_hidden: Callable[[int], Any] | None = None,
) -> Callable[[Any, Array], EvalMetrics]:
    """Build ``evaluate(params, key) -> EvalMetrics [E]`` (jitted, sharded over the mesh).

    Args:
        env: the environment (one instance; it is batched here).
        policy: ``policy(params, obs [E, N, O] raw) -> logits [E, N, A]`` (unmasked; for a
            continuous ``env``, ``(mean, log_std)`` each ``[E, N, A]``).
        num_episodes: E, must split evenly over the mesh's devices.
        mesh: default all devices (every process's in a multi-process run).
        greedy: arg-max instead of sampling.
        init_hidden: for a recurrent policy, ``init_hidden(e)`` is the hidden state of ``e``
            envs before their first step; ``policy`` is then
            ``policy(params, hidden, obs [E, N, O], first [E] bool) -> (hidden, output)``,
            ``first`` marking episode starts.

    Raises:
        ConfigError: if E does not split over the devices.
    """
    mesh = anakin.make_mesh() if mesh is None else mesh
    local = anakin.local_count(num_episodes, mesh, "arch.num_eval_episodes")
    vec = VecEnv(env, local)
    space = ActionSpace.of(env.spec)

    def act(params: Any, hidden: Any, ts: TimeStep, pos: Array, key: Array):
        key, k_act = jax.random.split(key)
        if init_hidden is None:
            out = policy(params, ts.obs)
        else:
            hidden, out = policy(params, hidden, ts.obs, ts.step_count == 0)
        dist = space.distribution(out, ts.legal)
        raw = dist.mode() if greedy else dist.sample(k_act)
        return hidden, dist.to_env(raw), key

    def evaluate_local(params: Any, key: Array) -> EvalMetrics:
        key = jax.random.fold_in(key, jax.lax.axis_index(anakin.AXIS))
        hidden = None if init_hidden is None else init_hidden(local)
        return first_episodes(vec, act, params, hidden, key)

    return anakin.shard_jit(evaluate_local, mesh, (REPLICATED, REPLICATED), SHARDED)


__all__ = ["EvalMetrics", "make_evaluator", "summarise"]
