"""The one evaluation loop of online and offline runs: each env scored on its first episode only.

``E`` auto-resetting envs step together (``lax.while_loop``) until every one has finished its
first episode (or the time limit plus one step has passed); later episodes are ignored, so every
episode is scored exactly once and none is cut short. Episode return = sum over time of the mean
agent reward. What acts is an :data:`ActFn`: the online policies (feed-forward, sharded over
devices, ``online/evaluate.py``) and the offline ones (recurrent, epsilon-greedy,
``offline/evaluate.py``) differ only there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.envs.base import Array, TimeStep
from marlvault.envs.vec import VecEnv, VecState


class EvalMetrics(NamedTuple):
    """One entry per evaluation episode, ``[E]``."""

    episode_return: Array  # [E] float32
    episode_length: Array  # [E] int32
    win: Array  # [E] bool


ActFn = Callable[[Any, Any, TimeStep, Array, Array], tuple[Any, Array, Array]]
"""``act(params, hidden, timestep [E, ...], pos [E] int32, key) -> (hidden, actions [E, N], key)``:
``pos`` counts the steps into each env's current episode; ``key`` is the loop's key, which the
function splits and returns (so each policy keeps its own key schedule)."""


class _Carry(NamedTuple):
    vstate: VecState  # [E]
    timestep: TimeStep  # [E, ...]
    hidden: Any  # policy carry, e.g. [E, N, H] (None for feed-forward policies)
    pos: Array  # [E] int32, steps into the current episode
    key: Array  # PRNG key
    finished: Array  # [E] bool
    result: EvalMetrics  # [E]
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


def episode_dict(metrics: EvalMetrics) -> dict[str, np.ndarray]:
    """Per-episode ``[E]`` arrays under the logger's metric names."""
    return {
        "episode_return": np.asarray(metrics.episode_return),
        "episode_length": np.asarray(metrics.episode_length),
        "win_rate": np.asarray(metrics.win, np.float64),
    }


def _step(vec: VecEnv, act: ActFn, params: Any, c: _Carry) -> _Carry:
    hidden, actions, key = act(params, c.hidden, c.timestep, c.pos, c.key)
    vstate, out = vec.step(c.vstate, actions)
    done = out.metrics.done
    first = done & ~c.finished
    result = EvalMetrics(
        jnp.where(first, out.metrics.episode_return, c.result.episode_return),
        jnp.where(first, out.metrics.episode_length, c.result.episode_length),
        jnp.where(first, out.metrics.win, c.result.win),
    )
    pos = jnp.where(done, 0, c.pos + 1)
    return _Carry(vstate, out.timestep, hidden, pos, key, c.finished | first, result, c.steps + 1)


def first_episodes(vec: VecEnv, act: ActFn, params: Any, hidden: Any, key: Array) -> EvalMetrics:
    """Scores the first episode of each of ``vec``'s ``E`` envs (call inside ``jit``).

    Args:
        vec: the batched envs (``E = vec.num_envs``).
        act: the policy step (see :data:`ActFn`).
        params: the policy's parameters, passed to ``act``.
        hidden: the policy's initial carry (``None`` for feed-forward policies).
        key: split once for the reset, then handed to ``act`` step by step.

    Returns:
        ``EvalMetrics [E]``.
    """
    key, k_reset = jax.random.split(key)
    vstate, ts = vec.reset(k_reset)
    e = vec.num_envs
    zeros = EvalMetrics(jnp.zeros(e, jnp.float32), jnp.zeros(e, jnp.int32), jnp.zeros(e, bool))
    carry = _Carry(vstate, ts, hidden, jnp.zeros(e, jnp.int32), key, jnp.zeros(e, bool), zeros,
                   jnp.zeros((), jnp.int32))
    max_steps = vec.spec.time_limit + 1
    carry = jax.lax.while_loop(
        lambda c: ~jnp.all(c.finished) & (c.steps < max_steps),
        lambda c: _step(vec, act, params, c),
        carry,
    )
    return carry.result
