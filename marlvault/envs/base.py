"""The one environment interface every part of marlvault uses.

Axis order (single environment): ``[agent, ...]``; vectorised: ``[env, agent, ...]``.
Observations are float32 and are *raw* (no agent id): agent ids are added by the learner /
offline loader with :func:`marlvault.envs.wrappers.add_agent_ids`, so vaults hold what the
environment emitted.

A ``MarlEnv`` is a pure, jittable single environment. ``VecEnv`` (``marlvault.envs.vec``) batches
``num_envs`` of them and auto-resets; the learner only ever sees ``VecEnv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import jax

Array = jax.Array
EnvState = Any  # an environment's own pytree state


@dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment instance."""

    env_name: str
    """Registry name, e.g. ``"rware"`` or ``"lbf"``."""
    scenario: str
    """Scenario name, e.g. ``"tiny-2ag"``."""
    num_agents: int
    """N, number of agents."""
    obs_dim: int
    """O, per-agent observation size (flattened)."""
    action_dim: int
    """A, number of discrete actions per agent (continuous: size of each agent's action)."""
    state_dim: int
    """S, global state size; 0 when the environment has no global state. For envs without a
    global state of their own (rware, lbf) the adapters emit the concatenation of all agents'
    raw observations, so ``S = N * O``."""
    time_limit: int
    """Episode length at which an episode is truncated."""
    has_win: bool = False
    """Whether episode metrics include a win flag."""
    continuous: bool = False
    """Actions are ``[N, A]`` float32 vectors instead of ``[N]`` int32 indices (no legal mask)."""
    state_per_agent: bool = False
    """The global state is ``[N, S]`` (each agent's own view) instead of ``[S]``."""
    action_low: float = -1.0
    """Continuous only: lower bound of every action component."""
    action_high: float = 1.0
    """Continuous only: upper bound of every action component."""
    team_reward: bool = True
    """Every agent gets the same reward (the team's); False: individual rewards."""

    @property
    def has_state(self) -> bool:
        return self.state_dim > 0


class TimeStep(NamedTuple):
    """What an environment emits after ``reset`` or ``step``.

    Shapes are for one environment; ``VecEnv`` adds a leading ``[env]`` axis to every field.
    """

    obs: Array  # [N, O] float32, observation to act on
    legal: Array  # [N, A] bool, legal-action mask for ``obs`` (continuous: all True)
    state: Array  # [S] float32, global state for ``obs`` (S may be 0)
    reward: Array  # [N] float32, reward of the step just taken (0 after reset)
    terminated: Array  # [] bool, the step just taken ended the episode by termination
    truncated: Array  # [] bool, the step just taken hit the time limit (and did not terminate)
    step_count: Array  # [] int32, steps taken in the episode that ``obs`` belongs to
    won: Array  # [] bool, the step just taken ended the episode with a win (False: no win notion)


class MarlEnv(Protocol):
    """A pure, jittable multi-agent environment (discrete or, with ``spec.continuous``, continuous
    actions)."""

    spec: EnvSpec

    def reset(self, key: Array) -> tuple[EnvState, TimeStep]:
        """Start an episode. Returns the state and a TimeStep with zero reward and flags."""
        ...

    def step(self, state: EnvState, actions: Array) -> tuple[EnvState, TimeStep]:
        """Take ``actions`` ([N] int32, or [N, A] float32 in ``[action_low, action_high]`` when
        ``spec.continuous``). No auto-reset: the caller (VecEnv) handles episode ends."""
        ...
