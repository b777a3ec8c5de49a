"""Adapters from jumanji's multi-agent environments to :class:`marlvault.envs.base.MarlEnv`.

Two environments are adapted, both with discrete actions and no global state of their own:

* ``rware``: jumanji ``RobotWarehouse`` (a JAX port of the robotic warehouse, RWARE).
* ``lbf``: jumanji ``LevelBasedForaging``.

What the adapter changes relative to jumanji:

* **Terminated vs truncated.** jumanji folds its time limit into termination (RWARE sets discount
  0 at the limit). The adapter builds the jumanji env with an effectively infinite time limit, so
  every jumanji episode end is a *real* termination (RWARE: two agents collided; LBF: all food
  eaten), and imposes the scenario's time limit itself: ``truncated = step_count >= time_limit
  and not terminated``.
* **Observations** are jumanji's per-agent vector view (``agents_view``), cast to float32
  ``[N, O]``, with no agent id.
* **Rewards** are team rewards repeated per agent, float32 ``[N]``. RWARE emits one shared
  scalar; LBF emits one reward per agent, whose sum is the team reward (as Mava does with
  ``use_individual_rewards=False``).
* **Global state** ``[S]``: neither env has one, so it is the concatenation of all agents'
  observations, ``S = N * O`` (what Mava's global-state wrapper does for these envs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
from jumanji.environments import LevelBasedForaging, RobotWarehouse
from jumanji.environments.routing.lbf.generator import RandomGenerator as LbfGenerator
from jumanji.environments.routing.robot_warehouse.generator import (
    RandomGenerator as RwareGenerator,
)

from marlvault.envs.base import Array, EnvSpec, EnvState, TimeStep
from marlvault.errors import EnvDependencyError

# jumanji compares ``step_count >= time_limit``; a limit no episode reaches (the adapter resets
# long before) keeps jumanji's own truncation out of the way. Fits int32 step counters.
INNER_TIME_LIMIT = 2**30


@dataclass(frozen=True)
class JumanjiMarlEnv:
    """A jumanji multi-agent env seen through the :class:`MarlEnv` protocol.

    The env state is jumanji's own state pytree (it carries ``step_count``).

    Attributes:
        spec: static sizes and the time limit.
        env: the jumanji environment, built with ``time_limit=INNER_TIME_LIMIT``.
        team_reward: "shared" if jumanji emits one scalar for the team, "sum" if it emits one
            reward per agent to be summed into the team reward, "mean" for common-payoff games
            that emit the same reward once per agent.
        obs_field: the per-agent observation field of jumanji's observation.
    """

    spec: EnvSpec
    env: Any
    team_reward: str
    obs_field: str = "agents_view"

    def _to_timestep(self, state: EnvState, jts: Any, first: bool) -> TimeStep:
        """Converts a jumanji TimeStep into ours (flags for the step just taken)."""
        n = self.spec.num_agents
        view = getattr(jts.observation, self.obs_field)
        obs = jnp.asarray(view, jnp.float32).reshape(n, -1)  # [N, O]
        mask = getattr(jts.observation, "action_mask", None)  # absent: every action legal
        if mask is None:
            legal = jnp.ones((n, self.spec.action_dim), bool)
        else:
            legal = jnp.asarray(mask, bool)  # [N, A]
        step_count = jnp.asarray(state.step_count, jnp.int32)
        if first:
            reward = jnp.zeros((n,), jnp.float32)
            terminated = jnp.zeros((), bool)
        else:
            raw = jnp.asarray(jts.reward, jnp.float32)
            team = {"shared": raw, "sum": jnp.sum(raw), "mean": jnp.mean(raw)}[self.team_reward]
            reward = jnp.broadcast_to(jnp.reshape(team, ()), (n,))  # [N]
            terminated = jnp.asarray(jts.last(), bool).reshape(())
        truncated = (step_count >= self.spec.time_limit) & ~terminated
        return TimeStep(
            obs=obs,
            legal=legal,
            state=obs.reshape(-1),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            step_count=step_count,
            won=jnp.zeros((), bool),
        )

    def reset(self, key: Array) -> tuple[EnvState, TimeStep]:
        """Starts an episode.

        Args:
            key: PRNG key.

        Returns:
            jumanji state and the first TimeStep (zero reward, no flags, step_count 0).
        """
        state, jts = self.env.reset(key)
        return state, self._to_timestep(state, jts, first=True)

    def step(self, state: EnvState, actions: Array) -> tuple[EnvState, TimeStep]:
        """Takes one step; no auto-reset.

        Args:
            state: jumanji state.
            actions: [N] int32 actions. Illegal actions are no-ops in both envs.

        Returns:
            next jumanji state and the TimeStep of the step just taken.
        """
        state, jts = self.env.step(state, jnp.asarray(actions, jnp.int32))
        return state, self._to_timestep(state, jts, first=False)


# --- scenarios -----------------------------------------------------------------------------------
# RWARE: Mava's scenario configs (instadeepai/Mava, mava/configs/env/scenario/{tiny-2ag,tiny-4ag,
# small-4ag}.yaml, and rware.yaml for ``time_limit: 500``), which follow the original RWARE names
# (semitable/robotic-warehouse: "tiny" = 1 shelf row, "small" = 2 shelf rows, 3 shelf columns,
# column height 8, request queue = number of agents).
RWARE_SCENARIOS: dict[str, dict[str, int]] = {
    "tiny-2ag": dict(shelf_rows=1, shelf_columns=3, column_height=8, num_agents=2),
    "tiny-4ag": dict(shelf_rows=1, shelf_columns=3, column_height=8, num_agents=4),
    "small-4ag": dict(shelf_rows=2, shelf_columns=3, column_height=8, num_agents=4),
}
RWARE_DEFAULTS: dict[str, int] = dict(sensor_range=1, time_limit=500)

# LBF: Mava's scenario configs (instadeepai/Mava, mava/configs/env/scenario/<name>.yaml; "2s" =
# sight (fov) 2, "-coop" = force_coop) with jumanji's default time limit of 100 steps (jumanji
# LevelBasedForaging, also what Mava runs these scenarios with).
LBF_SCENARIOS: dict[str, dict[str, Any]] = {
    "8x8-2p-2f-coop": dict(grid_size=8, fov=8, num_agents=2, num_food=2, force_coop=True),
    "2s-8x8-2p-2f-coop": dict(grid_size=8, fov=2, num_agents=2, num_food=2, force_coop=True),
    "10x10-3p-3f": dict(grid_size=10, fov=10, num_agents=3, num_food=3, force_coop=False),
    "2s-10x10-3p-3f": dict(grid_size=10, fov=2, num_agents=3, num_food=3, force_coop=False),
    "15x15-4p-3f": dict(grid_size=15, fov=15, num_agents=4, num_food=3, force_coop=False),
    "15x15-4p-5f": dict(grid_size=15, fov=15, num_agents=4, num_food=5, force_coop=False),
}
LBF_DEFAULTS: dict[str, Any] = dict(max_agent_level=2, time_limit=100)


def _spec_from_first_obs(
    env_name: str,
    scenario: str,
    env: Any,
    num_agents: int,
    num_actions: int,
    time_limit: int,
    obs_field: str = "agents_view",
) -> EnvSpec:
    """Reads obs size off the jumanji observation spec (no env step needed)."""
    view_shape = getattr(env.observation_spec, obs_field).shape  # (N, ...)
    obs_dim = 1
    for d in view_shape[1:]:
        obs_dim *= int(d)
    return EnvSpec(
        env_name=env_name,
        scenario=scenario,
        num_agents=num_agents,
        obs_dim=obs_dim,
        action_dim=num_actions,
        state_dim=num_agents * obs_dim,
        time_limit=int(time_limit),
        has_win=False,
    )


def make_rware(scenario: str, config: dict[str, Any]) -> JumanjiMarlEnv:
    """Builds RobotWarehouse from a full scenario config (scenario values plus overrides).

    Args:
        scenario: scenario name, recorded in the spec.
        config: shelf_rows, shelf_columns, column_height, num_agents, sensor_range, time_limit
            and optionally request_queue_size (default: num_agents).
    """
    n = int(config["num_agents"])
    generator = RwareGenerator(
        shelf_rows=int(config["shelf_rows"]),
        shelf_columns=int(config["shelf_columns"]),
        column_height=int(config["column_height"]),
        num_agents=n,
        sensor_range=int(config["sensor_range"]),
        request_queue_size=int(config.get("request_queue_size", n)),
    )
    env = RobotWarehouse(generator=generator, time_limit=INNER_TIME_LIMIT)
    spec = _spec_from_first_obs("rware", scenario, env, n, 5, config["time_limit"])
    return JumanjiMarlEnv(spec=spec, env=env, team_reward="shared")


def make_lbf(scenario: str, config: dict[str, Any]) -> JumanjiMarlEnv:
    """Builds LevelBasedForaging (vector observer) from a full scenario config.

    Args:
        scenario: scenario name, recorded in the spec.
        config: grid_size, fov, num_agents, num_food, force_coop, max_agent_level, time_limit.
    """
    n = int(config["num_agents"])
    generator = LbfGenerator(
        grid_size=int(config["grid_size"]),
        num_agents=n,
        num_food=int(config["num_food"]),
        fov=int(config["fov"]),
        max_agent_level=int(config["max_agent_level"]),
        force_coop=bool(config["force_coop"]),
    )
    env = LevelBasedForaging(generator=generator, time_limit=INNER_TIME_LIMIT)
    spec = _spec_from_first_obs("lbf", scenario, env, n, 6, config["time_limit"])
    return JumanjiMarlEnv(spec=spec, env=env, team_reward="sum")


# Matrax: 2-player repeated matrix games (instadeepai/matrax, registered as
# "{Penalty-k,Climbing}-{stateless,stateful}-v0"). Only the common-payoff (cooperative) games are
# listed, so the team reward is each agent's reward. Time limit 25 as in Mava's matrax.yaml
# (following Papoudakis et al. 2021). "stateful": each agent observes both agents' previous
# actions (-1 before the first step); "stateless": a constant zero observation.
MATRAX_SCENARIOS: dict[str, dict[str, Any]] = {
    **{
        f"penalty-{k}-{mode}": dict(game="penalty", penalty=k, keep_state=mode == "stateful")
        for k in (0, 25, 50, 75, 100)
        for mode in ("stateless", "stateful")
    },
    "climbing-stateless": dict(game="climbing", penalty=0, keep_state=False),
    "climbing-stateful": dict(game="climbing", penalty=0, keep_state=True),
}
MATRAX_DEFAULTS: dict[str, Any] = dict(time_limit=25)


def make_matrax(scenario: str, config: dict[str, Any]) -> JumanjiMarlEnv:
    """Builds a matrax MatrixGame (optional dependency: ``pip install 'marlvault[matrax]'``).

    Args:
        scenario: scenario name, recorded in the spec.
        config: game ("penalty" or "climbing"), penalty (for "penalty"), keep_state, time_limit.

    Raises:
        EnvDependencyError: matrax is not installed.
    """
    try:
        import matrax
        from matrax.games import climbing_game, penalty_games
    except ImportError as err:
        raise EnvDependencyError(
            f"environment 'matrax' (scenario {scenario!r}) needs the matrax package, which is "
            "not installed: expected `import matrax` to work; install it with "
            "`pip install 'marlvault[matrax]'`"
        ) from err
    if config["game"] == "penalty":
        payoff = penalty_games[str(int(config["penalty"]))]
    else:
        payoff = climbing_game
    env = matrax.MatrixGame(
        payoff, keep_state=bool(config["keep_state"]), time_limit=INNER_TIME_LIMIT
    )
    n, a = int(payoff.shape[0]), int(payoff.shape[1])
    spec = _spec_from_first_obs("matrax", scenario, env, n, a, config["time_limit"], "agent_obs")
    return JumanjiMarlEnv(spec=spec, env=env, team_reward="mean", obs_field="agent_obs")


__all__ = [
    "INNER_TIME_LIMIT",
    "JumanjiMarlEnv",
    "LBF_DEFAULTS",
    "LBF_SCENARIOS",
    "MATRAX_DEFAULTS",
    "MATRAX_SCENARIOS",
    "RWARE_DEFAULTS",
    "RWARE_SCENARIOS",
    "make_lbf",
    "make_matrax",
    "make_rware",
]
