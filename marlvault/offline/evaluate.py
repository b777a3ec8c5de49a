"""Online evaluation of offline policies, recurrent ones included.

The loop is :func:`marlvault.evaluation.first_episodes` (each env scored on its first episode);
this module supplies the act step from the :class:`~marlvault.offline.common.Algorithm`'s ``act``:
actions are greedy over legal actions (optionally epsilon-greedy: with probability ``epsilon``
an agent takes a uniformly random legal action — continuous actions: uniform in the bounds — the usual way to break the dead-locks a
deterministic policy can fall into, e.g. in LBF); agent ids are appended to the raw observations
when the policy was trained with them. The recurrent state is reset where an env starts a new
episode and every ``window`` steps into it (``algo.stride or algo.seq_len``): training windows
start from a zero state at exactly those steps (``offline/dataset.py``), so acting sees the same
hidden-state distribution as training instead of histories longer than any window it learnt from.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from marlvault.envs.base import Array, MarlEnv, TimeStep
from marlvault.envs.vec import VecEnv
from marlvault.envs.wrappers import add_agent_ids
from marlvault.evaluation import EvalMetrics, first_episodes, summarise
from marlvault.offline.common import Algorithm


def make_evaluator(env: MarlEnv, algo: Algorithm, num_episodes: int, agent_ids: bool,
                   epsilon: float = 0.0, greedy: bool = True):
    """Build ``evaluate(params, key) -> EvalMetrics [E]`` (jitted).

    Args:
        env: the environment the vault was recorded in.
        algo: the trained algorithm (its ``act`` and ``init_hidden``).
        num_episodes: E, episodes run in parallel.
        agent_ids: append one-hot agent ids to the observations (as the dataset did).
        epsilon: probability of a random legal action per agent and step (0: none).
        greedy: best legal action; ``False`` samples from the policy (BC) or Boltzmann over
            Q-values (Q-learners).
    """
    vec, spec = VecEnv(env, num_episodes), env.spec
    window = max(algo.stride or algo.seq_len, 1)

    def act(params: Any, hidden: Any, ts: TimeStep, pos: Array, key: Array):
        obs = add_agent_ids(ts.obs) if agent_ids else ts.obs
        key, k_rand, k_eps, k_act = jax.random.split(key, 4)
        hidden, actions = algo.act(params, hidden, obs, ts.legal, pos % window == 0,
                                   None if greedy else k_act)  # fmt: skip
        explore = jax.random.uniform(k_eps, ts.obs.shape[:2]) < epsilon  # [E, N]
        if spec.continuous:  # a uniform action in the box
            random = jax.random.uniform(k_rand, actions.shape, minval=spec.action_low,
                                        maxval=spec.action_high)
            return hidden, jnp.where(explore[..., None], random, actions), key
        legal = ts.legal.astype(jnp.float32)
        random = jax.random.categorical(k_rand, jnp.where(legal > 0, 0.0, -1e9), axis=-1)
        return hidden, jnp.where(explore, random.astype(jnp.int32), actions), key

    def evaluate(params: Any, key: Array) -> EvalMetrics:
        return first_episodes(vec, act, params, algo.init_hidden(num_episodes), key)

    return jax.jit(evaluate)


__all__ = ["EvalMetrics", "make_evaluator", "summarise"]
