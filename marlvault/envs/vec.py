"""``VecEnv``: ``num_envs`` copies of a :class:`MarlEnv`, batched and auto-resetting.

Axis order: ``[env, agent, ...]``. Both methods are pure and jittable, and use only the local
batch, so they also run inside ``shard_map`` on a slice of the envs.

Auto-reset
----------
When a step ends an episode (terminated or truncated), the env is reset within the same call:
the returned ``TimeStep`` holds the reward and flags of the step just taken, but the observation,
legal mask, state and step count of the *new* episode; ``VecStep.final_obs`` and
``VecStep.final_state`` keep the true observation and global state reached by the step.

Three schemes give the same results for the same key (bit-identical on the grid worlds; on
envs with float physics, such as MPE, they can differ in the last bit, ~1e-7, because XLA compiles
the env step differently inside each scheme's program):

* ``"naive"``: a ``vmap`` of a per-env ``lax.cond(done, reset, keep)``. Under ``vmap`` the cond
  becomes a ``select``, so every env computes a full reset on every step.
* ``"batch"``: one batch-level ``lax.cond(any(done), reset all and keep the done, identity)``
  outside the ``vmap``: resets are computed only on steps where some episode ended. RWARE
  episodes all end together at the time limit, but collisions end single episodes at random, so
  with many envs "any done" stops being rare.
* ``"fast"`` (default): ``lax.switch`` on the number of done envs: none -> identity; at most
  ``loop_max`` (default ``max(1, B // 8)``) -> a ``fori_loop`` that resets just those envs one by
  one; more -> the batch reset. The per-step cost then follows the number of episodes that ended.

If the caller ``vmap``s ``step`` itself (e.g. over seeds), the cond/switch turn into selects and
"batch"/"fast" cost about what "naive" costs (same results); ``jit``, ``scan`` and ``shard_map``
keep them real branches.

Keys: each env owns a PRNG key; a reset splits it into (next key, reset key) only when that env
resets, so an env's episodes do not depend on the batch size or on which scheme is used.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from marlvault.envs.base import Array, EnvSpec, EnvState, MarlEnv, TimeStep
from marlvault.envs.wrappers import EpisodeMetrics, EpisodeStats, update_episode_stats
from marlvault.errors import ConfigError

AUTORESET_SCHEMES = ("fast", "batch", "naive")


class VecState(NamedTuple):
    """Carry of a :class:`VecEnv`."""

    env_state: EnvState  # batched over [B]
    key: Array  # [B] PRNG keys (one per env), split only when that env resets
    episode_return: Array  # [B] float32 running
    episode_length: Array  # [B] int32 running


class VecStep(NamedTuple):
    """What :meth:`VecEnv.step` emits besides the new state."""

    timestep: TimeStep  # [B, ...] reward/flags of the step taken; obs etc. for the next action
    final_obs: Array  # [B, N, O] true observation reached by the step (== timestep.obs if not done)
    final_state: Array  # [B, S] true global state reached by the step (== timestep.state if not done)
    metrics: EpisodeMetrics


def _select(mask: Array, on_true: Any, on_false: Any) -> Any:
    """Per-env ``where`` over two pytrees with leading [B] axes."""

    def pick(a: Array, b: Array) -> Array:
        m = jnp.reshape(mask, mask.shape + (1,) * (a.ndim - mask.ndim))
        return jnp.where(m, a, b)

    return jax.tree.map(pick, on_true, on_false)


class VecEnv:
    """Batched, auto-resetting view of a :class:`MarlEnv`.

    Args:
        env: the single environment.
        num_envs: B, the (local) number of parallel envs.
        autoreset: "fast" (default), "batch" or "naive"; see the module docstring.
        loop_max: "fast" only: the most done envs reset one by one before switching to the
            batch reset; default ``max(1, num_envs // 8)``.
    """

    def __init__(
        self, env: MarlEnv, num_envs: int, autoreset: str = "fast", loop_max: int | None = None
    ) -> None:
        if int(num_envs) < 1:
            raise ConfigError(
                f"VecEnv num_envs: expected an integer >= 1, got {num_envs}; pass a positive count"
            )
        if autoreset not in AUTORESET_SCHEMES:
            raise ConfigError(
                f"VecEnv autoreset: expected one of {AUTORESET_SCHEMES}, got {autoreset!r}"
            )
        if loop_max is not None and int(loop_max) < 0:
            raise ConfigError(
                f"VecEnv loop_max: expected an integer >= 0 (0: always batch-reset), got "
                f"{loop_max}; pass a non-negative count or None for the default"
            )
        self.env = env
        self.num_envs = int(num_envs)
        self.autoreset = autoreset
        self.loop_max = max(1, self.num_envs // 8) if loop_max is None else int(loop_max)

    @property
    def spec(self) -> EnvSpec:
        return self.env.spec

    def _reset_one(self, key: Array) -> tuple[Array, EnvState, TimeStep]:
        """Resets one env from its key; returns (next key, state, timestep)."""
        next_key, reset_key = jax.random.split(key)
        state, ts = self.env.reset(reset_key)
        return next_key, state, ts

    def reset(self, key: Array) -> tuple[VecState, TimeStep]:
        """Starts B episodes.

        Args:
            key: one PRNG key; split into B per-env keys.

        Returns:
            the carry and a TimeStep whose fields have a leading [B] axis.
        """
        keys = jax.random.split(key, self.num_envs)
        keys, env_state, ts = jax.vmap(self._reset_one)(keys)
        zeros = EpisodeStats(
            jnp.zeros((self.num_envs,), jnp.float32), jnp.zeros((self.num_envs,), jnp.int32)
        )
        return VecState(env_state, keys, *zeros), ts

    def _reset_where(
        self, done: Array, keys: Array, env_state: EnvState, ts: TimeStep
    ) -> tuple[Array, EnvState, TimeStep]:
        """Resets the envs where ``done`` (computing resets for all B, selecting the done)."""
        new_keys, new_state, new_ts = jax.vmap(self._reset_one)(keys)
        return _select(done, (new_keys, new_state, new_ts), (keys, env_state, ts))

    def _autoreset_naive(self, done, keys, env_state, ts):
        def one(d, k, s, t):
            return jax.lax.cond(d, lambda: self._reset_one(k), lambda: (k, s, t))

        return jax.vmap(one)(done, keys, env_state, ts)

    def _reset_loop(
        self, done: Array, keys: Array, env_state: EnvState, ts: TimeStep
    ) -> tuple[Array, EnvState, TimeStep]:
        """Resets only the envs where ``done``, one at a time (cost ~ number of done envs)."""
        (idx,) = jnp.nonzero(done, size=self.num_envs, fill_value=0)

        def body(i, carry):
            j = idx[i]
            one = self._reset_one(keys[j])

            def put(batched: Array, leaf: Array) -> Array:
                return jax.lax.dynamic_update_index_in_dim(batched, leaf, j, 0)

            return jax.tree.map(put, carry, one)

        return jax.lax.fori_loop(0, jnp.sum(done), body, (keys, env_state, ts))

    def _autoreset_batch(self, done, keys, env_state, ts):
        return jax.lax.cond(
            jnp.any(done),
            lambda: self._reset_where(done, keys, env_state, ts),
            lambda: (keys, env_state, ts),
        )

    def _autoreset_fast(self, done, keys, env_state, ts):
        num_done = jnp.sum(done)
        branch = jnp.where(num_done == 0, 0, jnp.where(num_done <= self.loop_max, 1, 2))
        return jax.lax.switch(
            branch,
            [
                lambda: (keys, env_state, ts),
                lambda: self._reset_loop(done, keys, env_state, ts),
                lambda: self._reset_where(done, keys, env_state, ts),
            ],
        )

    def step(self, vstate: VecState, actions: Array) -> tuple[VecState, VecStep]:
        """Steps all B envs and auto-resets those whose episode ended.

        Args:
            vstate: the carry.
            actions: [B, N] int32.

        Returns:
            the new carry and the :class:`VecStep` of this step.
        """
        env_state, ts = jax.vmap(self.env.step)(vstate.env_state, actions)
        done = ts.terminated | ts.truncated  # [B]
        stats, metrics = update_episode_stats(
            EpisodeStats(vstate.episode_return, vstate.episode_length), ts.reward, done, ts.won
        )
        autoreset = {
            "fast": self._autoreset_fast,
            "batch": self._autoreset_batch,
            "naive": self._autoreset_naive,
        }[self.autoreset]
        keys, env_state, reset_ts = autoreset(done, vstate.key, env_state, ts)
        out_ts = ts._replace(
            obs=reset_ts.obs,
            legal=reset_ts.legal,
            state=reset_ts.state,
            step_count=reset_ts.step_count,
        )
        new_vstate = VecState(env_state, keys, stats.episode_return, stats.episode_length)
        return new_vstate, VecStep(
            timestep=out_ts, final_obs=ts.obs, final_state=ts.state, metrics=metrics
        )


__all__ = ["AUTORESET_SCHEMES", "EpisodeMetrics", "VecEnv", "VecState", "VecStep"]
