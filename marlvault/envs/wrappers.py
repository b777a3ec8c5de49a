"""Pure helpers and wrappers around :class:`MarlEnv`: agent ids and episode metrics.

Agent ids are *not* part of what environments emit (vaults hold raw observations); learners and
the offline loader append them with :func:`add_agent_ids`, and :class:`AgentIDWrapper` does the
same for code that wants an env with id-augmented observations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import jax.numpy as jnp

from marlvault.envs.base import Array, EnvSpec, EnvState, MarlEnv, TimeStep


def add_agent_ids(obs: Array) -> Array:
    """Appends a one-hot agent id to every agent's observation.

    Args:
        obs: [..., N, O] observations (any float dtype; leading axes are batch/time).

    Returns:
        [..., N, O + N] with ``out[..., i, O:] == one_hot(i, N)``, same dtype as ``obs``.
    """
    n = obs.shape[-2]
    ids = jnp.eye(n, dtype=obs.dtype)  # [N, N]
    ids = jnp.broadcast_to(ids, (*obs.shape[:-2], n, n))
    return jnp.concatenate([obs, ids], axis=-1)


@dataclass(frozen=True)
class AgentIDWrapper:
    """A :class:`MarlEnv` whose observations carry a one-hot agent id (``O' = O + N``).

    The global state is unchanged (it is the raw env's state).
    """

    env: MarlEnv

    @property
    def spec(self) -> EnvSpec:
        inner = self.env.spec
        return dataclasses.replace(inner, obs_dim=inner.obs_dim + inner.num_agents)

    def reset(self, key: Array) -> tuple[EnvState, TimeStep]:
        """Resets the inner env and adds ids to the observation."""
        state, ts = self.env.reset(key)
        return state, ts._replace(obs=add_agent_ids(ts.obs))

    def step(self, state: EnvState, actions: Array) -> tuple[EnvState, TimeStep]:
        """Steps the inner env and adds ids to the observation."""
        state, ts = self.env.step(state, actions)
        return state, ts._replace(obs=add_agent_ids(ts.obs))


class EpisodeMetrics(NamedTuple):
    """Per-env episode statistics emitted at every vectorised step."""

    done: Array  # [B] bool, an episode ended at this step
    episode_return: Array  # [B] float32, sum over time of the mean agent reward; valid where done
    episode_length: Array  # [B] int32, valid where done
    win: Array  # [B] bool (False where the env has no win notion)


class EpisodeStats(NamedTuple):
    """Running statistics of the episodes in progress."""

    episode_return: Array  # [B] float32
    episode_length: Array  # [B] int32


def update_episode_stats(
    stats: EpisodeStats, reward: Array, done: Array, win: Array | None = None
) -> tuple[EpisodeStats, EpisodeMetrics]:
    """Accumulates one step into the running stats; zeroes them where an episode ended.

    Args:
        stats: running return/length, [B] each.
        reward: [B, N] float32 rewards of the step just taken.
        done: [B] bool, the step ended the episode (terminated or truncated).
        win: [B] bool or None (no win notion: all False).

    Returns:
        the stats to carry (reset where done) and the metrics of this step (the finished
        episodes' totals where done).
    """
    ret = stats.episode_return + jnp.mean(reward, axis=-1).astype(jnp.float32)
    length = stats.episode_length + jnp.int32(1)
    win = jnp.zeros_like(done) if win is None else win & done
    metrics = EpisodeMetrics(done=done, episode_return=ret, episode_length=length, win=win)
    carry = EpisodeStats(
        episode_return=jnp.where(done, jnp.float32(0), ret),
        episode_length=jnp.where(done, jnp.int32(0), length),
    )
    return carry, metrics
