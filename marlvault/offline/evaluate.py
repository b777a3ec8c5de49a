"""Online evaluation of offline policies, recurrent ones included.

``marlvault.online.evaluate`` scores feed-forward policies (``policy(params, obs) -> logits``);
offline policies may carry a GRU state, so this module runs the same protocol with the
:class:`~marlvault.offline.common.Algorithm`'s ``act``: ``E`` auto-resetting envs step together
(one ``jit``, ``lax.while_loop``) until each has finished its first episode, which alone is scored;
actions are greedy over legal actions (optionally epsilon-greedy: with probability ``epsilon``
an agent takes a uniformly random legal action, the usual way to break the dead-locks a
deterministic policy can fall into, e.g. in LBF); agent ids are appended to the raw observations when the
policy was trained with them. The recurrent state is reset where an env starts a new episode and
every ``window`` steps into it (``algo.stride or algo.seq_len``): training windows start from a
zero state at exactly those steps (``offline/dataset.py``), so acting sees the same hidden-state
distribution as training instead of histories longer than any window it learnt from.
Episode return = sum over time of the mean agent reward (as in the vault's episode index).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from marlvault.envs.base import Array, MarlEnv, TimeStep
from marlvault.envs.vec import VecEnv, VecState
from marlvault.envs.wrappers import add_agent_ids
from marlvault.offline.common import Algorithm
from marlvault.online.evaluate import EvalMetrics, summarise


class _Carry(NamedTuple):
    vstate: VecState  # [E]
    timestep: TimeStep  # [E, ...]
    hidden: Any  # [E, N, H] policy carry
    pos: Array  # [E] int32, steps into the current episode
    finished: Array  # [E] bool
    result: EvalMetrics  # [E]
    steps: Array  # [] int32
    key: Array  # PRNG key for epsilon-greedy


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
    vec = VecEnv(env, num_episodes)
    window = max(algo.stride or algo.seq_len, 1)
    max_steps = env.spec.time_limit + 1

    def body(params: Any, c: _Carry) -> _Carry:
        obs = add_agent_ids(c.timestep.obs) if agent_ids else c.timestep.obs
        reset = c.pos % window == 0
        key, k_rand, k_eps, k_act = jax.random.split(c.key, 4)
        hidden, actions = algo.act(params, c.hidden, obs, c.timestep.legal, reset,
                                   None if greedy else k_act)  # fmt: skip
        legal = c.timestep.legal.astype(jnp.float32)
        random = jax.random.categorical(k_rand, jnp.where(legal > 0, 0.0, -1e9), axis=-1)
        explore = jax.random.uniform(k_eps, actions.shape) < epsilon
        actions = jnp.where(explore, random.astype(jnp.int32), actions)
        vstate, out = vec.step(c.vstate, actions)
        done = out.metrics.done
        first = done & ~c.finished
        result = EvalMetrics(
            jnp.where(first, out.metrics.episode_return, c.result.episode_return),
            jnp.where(first, out.metrics.episode_length, c.result.episode_length),
            jnp.where(first, out.metrics.win, c.result.win),
        )
        pos = jnp.where(done, 0, c.pos + 1)
        return _Carry(vstate, out.timestep, hidden, pos, c.finished | first, result, c.steps + 1,
                      key)

    def evaluate(params: Any, key: Array) -> EvalMetrics:
        key, reset_key = jax.random.split(key)
        vstate, ts = vec.reset(reset_key)
        e = num_episodes
        zeros = EvalMetrics(jnp.zeros(e, jnp.float32), jnp.zeros(e, jnp.int32),
                            jnp.zeros(e, bool))
        carry = _Carry(vstate, ts, algo.init_hidden(e), jnp.zeros(e, jnp.int32), jnp.zeros(e, bool),
                       zeros, jnp.zeros((), jnp.int32), key)
        carry = jax.lax.while_loop(
            lambda c: ~jnp.all(c.finished) & (c.steps < max_steps),
            lambda c: body(params, c),
            carry,
        )
        return carry.result

    return jax.jit(evaluate)


__all__ = ["EvalMetrics", "make_evaluator", "summarise"]
