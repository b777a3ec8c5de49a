"""Adapters from jaxmarl's environments to :class:`marlvault.envs.base.MarlEnv` (optional).

jaxmarl is an optional dependency (``pip install 'marlvault[jaxmarl]'``; MABrax also needs brax:
``pip install 'marlvault[mabrax]'``). It is imported only when one of these envs is built; specs
for listing (:func:`smax_spec`, :func:`mpe_spec`, :func:`mabrax_spec`) are computed without it.

Common to all three families:

* **Stepping.** jaxmarl's ``step`` auto-resets; the adapters call its non-resetting
  ``step_env(key, state, actions)``. ``MarlEnv.step`` has no key, so the adapter state
  (:class:`JaxMarlState`) carries one and splits it on every step.
* **Actions** come in the order of ``env.agents``: ``[N]`` int32 (discrete) or ``[N, A]`` float32
  (continuous, clipped to ``[spec.action_low, spec.action_high]`` before jaxmarl sees them).
* **Observations** are jaxmarl's per-agent observations as float32 ``[N, O]``, no agent id. Where
  agents' observation sizes differ (MABrax hopper and halfcheetah), each is zero-padded at the end
  to the largest size ``O``.
* **Time limit.** The inner jaxmarl env is built so that its own time limit never fires; the
  adapter counts steps and sets ``truncated = step_count >= time_limit and not terminated``.
  (jaxmarl's SMAX and MPE compare the step count *before* incrementing it, so their own episodes
  last ``max_steps + 1`` steps; here they last exactly ``time_limit`` steps.)

``smax``: ``HeuristicEnemySMAX``, scenarios = jaxmarl's SMAX map names
    Allies are the agents; the enemies follow jaxmarl's heuristic policy (shooting, closest target).

    * observation: jaxmarl's ``unit_list`` view: 13 features (health, relative position, last
      movement, last target, cooldown, 6 unit-type bits) for each other ally and each enemy (zeros
      when not visible or dead), then 10 own features. Same size for every ally on every map.
    * state ``[S]``: jaxmarl's ``world_state``: 10 features per unit (zeros when dead), then every
      unit's team and unit type; ``S = 12 * (allies + enemies)``.
    * actions: discrete, ``A = 5 + enemies`` (4 moves, stop, attack enemy i). Legal mask = jaxmarl's
      ``get_avail_actions`` (stop always legal; a dead ally can only stop). jaxmarl ignores an
      illegal action (no move for a dead unit, no damage when the target is out of range or dead).
    * reward: jaxmarl gives every ally the same team reward (``spec.team_reward``): the sum over
      enemies of the fraction of its maximum health lost this step, divided by the number of
      enemies, plus 1.0 when the battle is won (dead allies keep receiving it).
    * terminated: one side has no unit alive (the battle is over). truncated: ``time_limit``
      (default 100, jaxmarl's ``max_steps``).
    * won: terminated with every enemy dead and at least one ally alive, exactly when jaxmarl
      pays its win bonus (both sides wiped out on the same step is a draw: terminated, not won).

``mpe``: ``SimpleSpreadMPE`` (``simple_spread_v3``, 3 agents, 3 landmarks)
    * observation: own velocity (2) and position (2), landmarks relative to the agent (2 each),
      other agents relative to the agent (2 each), other agents' communication (2 each, always
      zero: the agents are silent): ``O = 4 + 4 * (N - 1) + 2 * L``.
    * state ``[S]``: MPE has none, so it is the concatenation of all observations, ``S = N * O``.
    * actions: ``simple_spread_v3``: discrete, 5 (no-op, -x, +x, -y, +y), all legal.
      ``simple_spread_v3-continuous``: jaxmarl ``action_type="Continuous"``, ``Box(0, 1, (5,))``
      per agent (force ``[a2 - a1, a4 - a3]``; ``a0`` does nothing), clipped to ``[0, 1]`` here
      (jaxmarl does not clip); legal mask ``[N, 5]`` all True.
    * reward: individual (``team_reward=False``): ``local_ratio * (-collisions of this agent)
      + (1 - local_ratio) * (-sum over landmarks of the distance to its nearest agent)`` with
      ``local_ratio = 0.5``; agents' rewards differ when some agents collide.
    * never terminates; truncated at ``time_limit`` (default 25, jaxmarl's ``max_steps`` and
      PettingZoo's ``max_cycles`` for simple spread).

``mabrax``: jaxmarl's multi-agent Brax (``ant_4x2``, ``halfcheetah_6x1``, ``hopper_3x1``)
    Each agent controls some joints of one Brax robot (MaMuJoCo-style partition).

    * observation: jaxmarl's per-agent slice of the Brax observation (own and neighbouring joints,
      root), zero-padded to the largest agent's size.
    * state ``[S]``: the full Brax observation (ant 27, halfcheetah 17, hopper 11).
    * actions: continuous ``[N, A]`` in ``[-1, 1]`` (A = joints per agent: ant 2, others 1).
    * reward: Brax's single reward, shared by every agent (``team_reward=True``).
    * terminated: Brax's ``done`` (ant and hopper: the robot became unhealthy; halfcheetah never
      terminates). truncated: ``time_limit`` (default 1000, jaxmarl's ``episode_length``). Brax
      is built without its episode and auto-reset wrappers.
    * halfcheetah: jaxmarl 0.2.0's observation mapping indexes a Brax observation that includes the
      root x position (18 entries), while Brax's halfcheetah leaves it out by default (17 entries,
      so jaxmarl's indices would be off by one and the last one out of range). The adapter builds
      halfcheetah with ``exclude_current_positions_from_observation=False`` so the mapping is
      right, and drops the root x position from the global state (back to Brax's 17 entries).
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.envs.base import Array, EnvSpec, TimeStep
from marlvault.errors import EnvDependencyError

# jaxmarl compares its step counter with ``max_steps``; a limit no episode reaches (the adapter
# truncates long before) keeps jaxmarl's own time limit out of the way. Fits int32 counters.
INNER_TIME_LIMIT = 2**30


def _strong(tree: Any) -> Any:
    """Drops weak types from every leaf.

    jaxmarl and Brax build some state fields from Python scalars (weakly typed) in ``reset`` but
    not in ``step`` or the other way round; with strong types everywhere, the state after a reset
    and after a step have identical types, as ``lax.cond``/``scan`` and the jit cache want.
    """

    def strong(x: Any) -> Any:
        if jax.dtypes.issubdtype(jnp.result_type(x), jax.dtypes.extended):  # typed PRNG keys
            return x
        return jax.lax.convert_element_type(x, jnp.result_type(x))

    return jax.tree.map(strong, tree)


class JaxMarlState(NamedTuple):
    """State of a jaxmarl adapter."""

    inner: Any  # the jaxmarl env's own state pytree
    key: Array  # PRNG key for the next step (jaxmarl's step_env takes one)
    step_count: Array  # [] int32, steps taken in this episode


@dataclass(frozen=True)
class JaxMarlEnv:
    """A jaxmarl env seen through the :class:`MarlEnv` protocol (subclasses per family).

    Attributes:
        spec: static sizes, bounds and the time limit.
        env: the jaxmarl environment (its own time limit out of reach).
        act_sizes: continuous only: each agent's action size (``<= spec.action_dim``; the extra
            components of a padded action are ignored).
    """

    spec: EnvSpec
    env: Any
    act_sizes: tuple[int, ...] = ()

    # --- per-family hooks ---------------------------------------------------------------------
    def _global_state(self, inner: Any, obs_dict: dict, obs: Array) -> Array:
        """[S] float32 global state; default: all observations concatenated."""
        del inner, obs_dict
        return obs.reshape(-1)

    def _legal(self, inner: Any) -> Array:
        """[N, A] bool legal mask; default: every action legal."""
        del inner
        return jnp.ones((self.spec.num_agents, self.spec.action_dim), bool)

    def _won(self, inner: Any) -> Array:
        """[] bool, the battle is won in ``inner``; default: no win notion."""
        del inner
        return jnp.zeros((), bool)

    # --- conversion ---------------------------------------------------------------------------
    def _obs(self, obs_dict: dict) -> Array:
        """Stacks per-agent observations into [N, O] float32, zero-padding short ones."""
        rows = []
        for agent in self.env.agents:
            row = jnp.asarray(obs_dict[agent], jnp.float32).reshape(-1)
            rows.append(jnp.pad(row, (0, self.spec.obs_dim - row.shape[0])))
        return jnp.stack(rows)

    def _actions(self, actions: Array) -> dict[str, Array]:
        """[N] int32 or [N, A] float32 (clipped to the bounds) -> jaxmarl's dict per agent."""
        if not self.spec.continuous:
            acts = jnp.asarray(actions, jnp.int32)
            return {agent: acts[i] for i, agent in enumerate(self.env.agents)}
        acts = jnp.clip(
            jnp.asarray(actions, jnp.float32), self.spec.action_low, self.spec.action_high
        )
        return {agent: acts[i, : self.act_sizes[i]] for i, agent in enumerate(self.env.agents)}

    def _timestep(
        self, inner: Any, obs_dict: dict, reward: Array, terminated: Array, step_count: Array
    ) -> TimeStep:
        obs = self._obs(obs_dict)
        truncated = (step_count >= self.spec.time_limit) & ~terminated
        return TimeStep(
            obs=obs,
            legal=self._legal(inner),
            state=jnp.asarray(self._global_state(inner, obs_dict, obs), jnp.float32),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            step_count=step_count,
            won=terminated & self._won(inner),
        )

    # --- MarlEnv ------------------------------------------------------------------------------
    def reset(self, key: Array) -> tuple[JaxMarlState, TimeStep]:
        """Starts an episode.

        Args:
            key: PRNG key.

        Returns:
            the adapter state and the first TimeStep (zero reward, no flags, step_count 0).
        """
        key, reset_key = jax.random.split(key)
        obs_dict, inner = self.env.reset(reset_key)
        zero = jnp.zeros((), jnp.int32)
        reward = jnp.zeros((self.spec.num_agents,), jnp.float32)
        ts = self._timestep(inner, obs_dict, reward, jnp.zeros((), bool), zero)
        return JaxMarlState(_strong(inner), key, zero), ts

    def step(self, state: JaxMarlState, actions: Array) -> tuple[JaxMarlState, TimeStep]:
        """Takes one step with jaxmarl's non-resetting ``step_env``.

        Args:
            state: the adapter state.
            actions: [N] int32, or [N, A] float32 when ``spec.continuous``.

        Returns:
            the next state and the TimeStep of the step just taken.
        """
        key, step_key = jax.random.split(state.key)
        obs_dict, inner, rewards, dones, _ = self.env.step_env(
            step_key, state.inner, self._actions(actions)
        )
        reward = jnp.stack([jnp.asarray(rewards[a], jnp.float32) for a in self.env.agents])
        terminated = jnp.asarray(dones["__all__"], bool).reshape(())
        step_count = state.step_count + 1
        ts = self._timestep(inner, obs_dict, reward, terminated, step_count)
        return JaxMarlState(_strong(inner), key, step_count), ts


@dataclass(frozen=True)
class SmaxEnv(JaxMarlEnv):
    """SMAX with the heuristic enemy: world_state, legal masks from jaxmarl, a win flag."""

    def _global_state(self, inner: Any, obs_dict: dict, obs: Array) -> Array:
        del inner, obs
        return obs_dict["world_state"]

    def _legal(self, inner: Any) -> Array:
        avail = self.env.get_avail_actions(inner)
        return jnp.stack([jnp.asarray(avail[a], bool) for a in self.env.agents])

    def _won(self, inner: Any) -> Array:
        alive = inner.state.unit_alive  # [allies + enemies]
        allies = self.env.num_allies
        return jnp.any(alive[:allies]) & ~jnp.any(alive[allies:])


@dataclass(frozen=True)
class MabraxEnv(JaxMarlEnv):
    """Multi-agent Brax: the global state is the Brax observation (from ``state_start`` on)."""

    state_start: int = 0

    def _global_state(self, inner: Any, obs_dict: dict, obs: Array) -> Array:
        del obs_dict, obs
        return inner.obs[self.state_start :]


# --- importing jaxmarl ---------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Swallows what jaxmarl prints while importing ("Importing submoduled environments...").

    jaxmarl's MABrax module resets ``sys.stdout`` to ``sys.__stdout__`` in the middle of the
    import (after silencing brax), so both are pointed at the sink, and both streams are restored
    afterwards.
    """
    saved = (sys.stdout, sys.stderr, sys.__stdout__)
    sink = io.StringIO()
    sys.stdout = sys.__stdout__ = sink
    try:
        yield
    finally:
        sys.stdout, sys.stderr, sys.__stdout__ = saved


def _import_jaxmarl(env_name: str, scenario: str) -> Any:
    """Imports jaxmarl (quietly) and returns ``jaxmarl.environments``.

    Raises:
        EnvDependencyError: jaxmarl is not installed.
    """
    try:
        with _quiet_import():
            import jaxmarl  # noqa: F401
            import jaxmarl.environments as environments
    except ImportError as err:
        raise EnvDependencyError(
            f"environment {env_name!r} (scenario {scenario!r}) needs the jaxmarl package, which "
            f"is not installed ({err}): expected `import jaxmarl` to work; install it with "
            "`pip install 'marlvault[jaxmarl]'`"
        ) from err
    return environments


def _bounds(spaces: list[Any], scenario: str) -> tuple[float, float]:
    """The one (low, high) shared by every component of every agent's Box."""
    lows = np.concatenate([np.broadcast_to(np.asarray(s.low), s.shape).ravel() for s in spaces])
    highs = np.concatenate([np.broadcast_to(np.asarray(s.high), s.shape).ravel() for s in spaces])
    if lows.min() != lows.max() or highs.min() != highs.max():
        raise ValueError(
            f"{scenario}: expected the same action bounds for every component, got lows "
            f"{sorted(set(lows.tolist()))} and highs {sorted(set(highs.tolist()))}"
        )
    return float(lows[0]), float(highs[0])


def _spec_from_env(
    env_name: str, scenario: str, env: Any, time_limit: int, state_dim: int | None, **flags: Any
) -> tuple[EnvSpec, tuple[int, ...]]:
    """Reads sizes off a built jaxmarl env's spaces; returns the spec and per-agent action sizes.

    ``state_dim=None``: the state is the concatenated observations (``N * O``).
    """
    agents = list(env.agents)
    obs_dim = max(int(np.prod(env.observation_spaces[a].shape)) for a in agents)
    spaces = [env.action_spaces[a] for a in agents]
    continuous = hasattr(spaces[0], "low")
    if continuous:
        act_sizes = tuple(int(np.prod(s.shape)) for s in spaces)
        action_dim = max(act_sizes)
        low, high = _bounds(spaces, scenario)
    else:
        act_sizes = ()
        action_dim = int(spaces[0].n)
        low, high = EnvSpec.action_low, EnvSpec.action_high
    spec = EnvSpec(
        env_name=env_name,
        scenario=scenario,
        num_agents=len(agents),
        obs_dim=obs_dim,
        action_dim=action_dim,
        state_dim=len(agents) * obs_dim if state_dim is None else int(state_dim),
        time_limit=int(time_limit),
        continuous=continuous,
        action_low=low,
        action_high=high,
        **flags,
    )
    return spec, act_sizes


# --- SMAX ----------------------------------------------------------------------------------------
# jaxmarl 0.2.0's SMAX maps (jaxmarl/environments/smax/smax_env.py, MAP_NAME_TO_SCENARIO):
# (allies, enemies). "smacv2_*" draw unit types and start positions at random on every reset.
SMAX_MAPS: dict[str, tuple[int, int]] = {
    "3m": (3, 3),
    "8m": (8, 8),
    "25m": (25, 25),
    "5m_vs_6m": (5, 6),
    "10m_vs_11m": (10, 11),
    "27m_vs_30m": (27, 30),
    "2s3z": (5, 5),
    "3s5z": (8, 8),
    "3s5z_vs_3s6z": (8, 9),
    "3s_vs_5z": (3, 5),
    "6h_vs_8z": (6, 8),
    "smacv2_5_units": (5, 5),
    "smacv2_10_units": (10, 10),
    "smacv2_20_units": (20, 20),
}
SMAX_SCENARIOS: dict[str, dict[str, Any]] = {name: {} for name in SMAX_MAPS}
SMAX_DEFAULTS: dict[str, Any] = dict(time_limit=100)  # jaxmarl SMAX's max_steps
# SMAX feature counts with jaxmarl's 6 unit types: 7 + 6 per other unit, 4 + 6 own, 4 + 6 + 2
# (team, type) per unit in the world state; 5 movement actions (4 moves and stop).
_SMAX_UNIT, _SMAX_OWN, _SMAX_WORLD, _SMAX_MOVES = 13, 10, 12, 5


def smax_spec(scenario: str, config: dict[str, Any]) -> EnvSpec:
    """The spec of an SMAX scenario without importing jaxmarl (equal to the built env's)."""
    allies, enemies = SMAX_MAPS[scenario]
    return EnvSpec(
        env_name="smax",
        scenario=scenario,
        num_agents=allies,
        obs_dim=_SMAX_UNIT * (allies - 1 + enemies) + _SMAX_OWN,
        action_dim=_SMAX_MOVES + enemies,
        state_dim=_SMAX_WORLD * (allies + enemies),
        time_limit=int(config["time_limit"]),
        has_win=True,
        team_reward=True,
    )


def make_smax(scenario: str, config: dict[str, Any]) -> SmaxEnv:
    """Builds SMAX with the heuristic enemy (``pip install 'marlvault[jaxmarl]'``).

    Args:
        scenario: a jaxmarl SMAX map name (see ``SMAX_MAPS``).
        config: time_limit.

    Raises:
        EnvDependencyError: jaxmarl is not installed.
    """
    environments = _import_jaxmarl("smax", scenario)
    from jaxmarl.environments.smax import map_name_to_scenario

    env = environments.HeuristicEnemySMAX(
        scenario=map_name_to_scenario(scenario), max_steps=INNER_TIME_LIMIT
    )
    spec, _ = _spec_from_env(
        "smax", scenario, env, config["time_limit"], env.state_size, has_win=True, team_reward=True
    )
    return SmaxEnv(spec=spec, env=env)


# --- MPE -----------------------------------------------------------------------------------------
MPE_SCENARIOS: dict[str, dict[str, Any]] = {
    "simple_spread_v3": dict(num_agents=3, num_landmarks=3, local_ratio=0.5),
    "simple_spread_v3-continuous": dict(num_agents=3, num_landmarks=3, local_ratio=0.5),
}
MPE_DEFAULTS: dict[str, Any] = dict(time_limit=25)  # jaxmarl MPE's MAX_STEPS
_MPE_CONTINUOUS = {"simple_spread_v3": False, "simple_spread_v3-continuous": True}
_MPE_ACTIONS = 5  # no-op, -x, +x, -y, +y (continuous: 5 components, Box(0, 1))


def mpe_spec(scenario: str, config: dict[str, Any]) -> EnvSpec:
    """The spec of an MPE scenario without importing jaxmarl (equal to the built env's)."""
    n, landmarks = int(config["num_agents"]), int(config["num_landmarks"])
    obs_dim = 4 + 4 * (n - 1) + 2 * landmarks
    continuous = _MPE_CONTINUOUS[scenario]
    return EnvSpec(
        env_name="mpe",
        scenario=scenario,
        num_agents=n,
        obs_dim=obs_dim,
        action_dim=_MPE_ACTIONS,
        state_dim=n * obs_dim,
        time_limit=int(config["time_limit"]),
        continuous=continuous,
        action_low=0.0 if continuous else EnvSpec.action_low,
        team_reward=False,
    )


def make_mpe(scenario: str, config: dict[str, Any]) -> JaxMarlEnv:
    """Builds MPE simple spread (``pip install 'marlvault[jaxmarl]'``).

    Args:
        scenario: "simple_spread_v3" (discrete) or "simple_spread_v3-continuous".
        config: num_agents, num_landmarks, local_ratio, time_limit.

    Raises:
        EnvDependencyError: jaxmarl is not installed.
    """
    environments = _import_jaxmarl("mpe", scenario)
    env = environments.SimpleSpreadMPE(
        num_agents=int(config["num_agents"]),
        num_landmarks=int(config["num_landmarks"]),
        local_ratio=float(config["local_ratio"]),
        action_type="Continuous" if _MPE_CONTINUOUS[scenario] else "Discrete",
        max_steps=INNER_TIME_LIMIT,
    )
    spec, act_sizes = _spec_from_env(
        "mpe", scenario, env, config["time_limit"], None, team_reward=False
    )
    return JaxMarlEnv(spec=spec, env=env, act_sizes=act_sizes)


# --- MABrax --------------------------------------------------------------------------------------
MABRAX_SCENARIOS: dict[str, dict[str, Any]] = {
    "ant_4x2": {},
    "halfcheetah_6x1": {},
    "hopper_3x1": {},
}
MABRAX_DEFAULTS: dict[str, Any] = dict(time_limit=1000)  # jaxmarl MABrax's episode_length
# (agents, largest per-agent observation, joints per agent, Brax observation size) with brax 0.14
# and jaxmarl 0.2.0's mappings; checked against the built envs by the tests.
_MABRAX_SIZES: dict[str, tuple[int, int, int, int]] = {
    "ant_4x2": (4, 18, 2, 27),
    "halfcheetah_6x1": (6, 9, 1, 17),
    "hopper_3x1": (3, 9, 1, 11),
}
# Brax keyword arguments that make the Brax observation match jaxmarl's mapping (see above), and
# where the global state starts in that observation.
_MABRAX_BRAX_KWARGS: dict[str, dict[str, Any]] = {
    "halfcheetah_6x1": dict(exclude_current_positions_from_observation=False),
}
_MABRAX_STATE_START = {"halfcheetah_6x1": 1}


def mabrax_spec(scenario: str, config: dict[str, Any]) -> EnvSpec:
    """The spec of a MABrax scenario without importing jaxmarl or brax."""
    n, obs_dim, action_dim, state_dim = _MABRAX_SIZES[scenario]
    return EnvSpec(
        env_name="mabrax",
        scenario=scenario,
        num_agents=n,
        obs_dim=obs_dim,
        action_dim=action_dim,
        state_dim=state_dim,
        time_limit=int(config["time_limit"]),
        continuous=True,
        team_reward=True,
    )


def make_mabrax(scenario: str, config: dict[str, Any]) -> MabraxEnv:
    """Builds a jaxmarl MABrax env (``pip install 'marlvault[mabrax]'``: jaxmarl and brax).

    Args:
        scenario: "ant_4x2", "halfcheetah_6x1" or "hopper_3x1".
        config: time_limit.

    Raises:
        EnvDependencyError: jaxmarl or brax is not installed.
    """
    environments = _import_jaxmarl("mabrax", scenario)
    if not environments.MABRAX_AVAILABLE:
        try:  # jaxmarl swallows the reason; import brax to report it
            import brax  # noqa: F401

            reason = "jaxmarl could not import its MABrax module"
        except ImportError as err:
            reason = str(err)
        raise EnvDependencyError(
            f"environment 'mabrax' (scenario {scenario!r}) needs brax, which is not usable "
            f"({reason}): expected `import brax` to work; install it with "
            "`pip install 'marlvault[mabrax]'`"
        )
    from jaxmarl.environments.mabrax import MABraxEnv

    with warnings.catch_warnings():  # jaxmarl and brax announce that MABrax/Brax are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        env = MABraxEnv(
            scenario,
            episode_length=None,  # no Brax EpisodeWrapper: no inner time limit
            auto_reset=False,
            **_MABRAX_BRAX_KWARGS.get(scenario, {}),
        )
    start = _MABRAX_STATE_START.get(scenario, 0)
    state_dim = int(env.env.observation_size) - start
    spec, act_sizes = _spec_from_env(
        "mabrax", scenario, env, config["time_limit"], state_dim, team_reward=True
    )
    return MabraxEnv(spec=spec, env=env, act_sizes=act_sizes, state_start=start)


__all__ = [
    "INNER_TIME_LIMIT",
    "JaxMarlEnv",
    "JaxMarlState",
    "MABRAX_DEFAULTS",
    "MABRAX_SCENARIOS",
    "MPE_DEFAULTS",
    "MPE_SCENARIOS",
    "MabraxEnv",
    "SMAX_DEFAULTS",
    "SMAX_MAPS",
    "SMAX_SCENARIOS",
    "SmaxEnv",
    "make_mabrax",
    "make_mpe",
    "make_smax",
    "mabrax_spec",
    "mpe_spec",
    "smax_spec",
]
