"""The jaxmarl adapters: SMAX (heuristic enemy), MPE simple spread, MABrax (marked slow).

jaxmarl is in the dev extra, so it is imported directly. Every jitted function is compiled once
per module (module-scoped fixtures); states are edited by hand to reach episode ends quickly.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import jaxmarl  # noqa: F401  (dev extra: a missing jaxmarl must fail, not skip)
import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.envs import VecEnv, list_envs, make_env, registry
from marlvault.envs.jaxmarl_envs import JaxMarlState
from marlvault.errors import EnvDependencyError, EnvNotFoundError

SMAX_LIMIT = 5  # short episodes: the armies cannot meet in 5 steps, so they end by truncation


def _static_spec(env_name: str, scenario: str):
    fam = registry._REGISTRY[env_name]
    return fam.spec(scenario, {**fam.defaults, **fam.scenarios[scenario]})


def _check_types(env, ts) -> None:
    spec = env.spec
    n, o, a, s = spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_dim
    expected = {
        "obs": ((n, o), jnp.float32),
        "legal": ((n, a), jnp.bool_),
        "state": ((s,), jnp.float32),
        "reward": ((n,), jnp.float32),
        "terminated": ((), jnp.bool_),
        "truncated": ((), jnp.bool_),
        "step_count": ((), jnp.int32),
        "won": ((), jnp.bool_),
    }
    for field, (shape, dtype) in expected.items():
        value = getattr(ts, field)
        assert (value.shape, value.dtype) == (shape, dtype), field


class _Jitted:
    """An env with its reset and step compiled once."""

    def __init__(self, env):
        self.env = env
        self.reset = jax.jit(env.reset)
        self.step = jax.jit(env.step)


@pytest.fixture(scope="module")
def smax() -> _Jitted:
    return _Jitted(make_env("smax", "3m", time_limit=SMAX_LIMIT))


@pytest.fixture(scope="module")
def mpe() -> _Jitted:
    return _Jitted(make_env("mpe", "simple_spread_v3"))


@pytest.fixture(scope="module")
def mpe_cont() -> _Jitted:
    return _Jitted(make_env("mpe", "simple_spread_v3-continuous"))


# --- specs and errors ----------------------------------------------------------------------------
def test_scenarios_listed():
    envs = list_envs()
    assert {"3m", "2s3z", "5m_vs_6m", "3s5z", "smacv2_5_units"} <= set(envs["smax"])
    assert envs["mpe"] == ["simple_spread_v3", "simple_spread_v3-continuous"]
    assert envs["mabrax"] == ["ant_4x2", "halfcheetah_6x1", "hopper_3x1"]


@pytest.mark.parametrize("env_name", ["smax", "mpe"])
def test_listing_spec_equals_built_spec(env_name):
    for scenario in list_envs()[env_name]:
        assert make_env(env_name, scenario).spec == _static_spec(env_name, scenario), scenario


def test_specs():
    spec = make_env("smax", "3m").spec
    # 3 allies: 13 features for each of 2 allies + 3 enemies, 10 own; 5 + 3 actions; 12 per unit.
    assert (spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_dim) == (3, 75, 8, 72)
    assert spec.time_limit == 100 and spec.has_win and spec.team_reward and not spec.continuous
    spec = make_env("smax", "2s3z").spec  # heterogeneous units, one obs size
    assert (spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_dim) == (5, 127, 10, 120)
    spec = make_env("mpe", "simple_spread_v3").spec
    assert (spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_dim) == (3, 18, 5, 54)
    assert spec.time_limit == 25 and not spec.team_reward and not spec.has_win
    spec = make_env("mpe", "simple_spread_v3-continuous").spec
    assert spec.continuous and (spec.action_dim, spec.action_low, spec.action_high) == (5, 0.0, 1.0)


@pytest.mark.parametrize("which", ["smax", "mpe", "mpe_cont"])
def test_state_types_equal_after_reset_and_step(which, request):
    """Same shapes, dtypes and weak types: no retracing, and VecEnv's cond/switch accept it."""
    env = request.getfixturevalue(which).env
    state, _ = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    shape = (env.spec.num_agents, env.spec.action_dim) if env.spec.continuous else (3,)
    dtype = jnp.float32 if env.spec.continuous else jnp.int32
    next_state, _ = jax.eval_shape(env.step, state, jax.ShapeDtypeStruct(shape, dtype))
    assert jax.tree.structure(state) == jax.tree.structure(next_state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(next_state), strict=True):
        assert (a.shape, a.dtype, a.weak_type) == (b.shape, b.dtype, b.weak_type)


def test_unknown_scenario_lists_valid_ones():
    with pytest.raises(EnvNotFoundError) as info:
        make_env("smax", "4m")
    assert "'4m'" in str(info.value) and "3m" in str(info.value) and "2s3z" in str(info.value)
    with pytest.raises(EnvNotFoundError, match="simple_spread_v3-continuous"):
        make_env("mpe", "simple_tag_v3")


def test_missing_jaxmarl_raises_dependency_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "jaxmarl", None)  # makes `import jaxmarl` fail
    registry._build.cache_clear()
    try:
        for env_name, scenario in (("smax", "3m"), ("mpe", "simple_spread_v3")):
            with pytest.raises(EnvDependencyError, match=r"pip install 'marlvault\[jaxmarl\]'"):
                make_env(env_name, scenario)
        assert registry.missing_extra("smax") == "jaxmarl"
        result = CliRunner().invoke(app, ["envs", "--env", "smax"])
        assert result.exit_code == 0, result.output
        row = next(line for line in result.output.splitlines() if " 3m " in line)
        assert "discrete 8" in row and "marlvault[jaxmarl]" in row  # sizes listed all the same
    finally:
        registry._build.cache_clear()


def test_missing_brax_raises_dependency_error(monkeypatch):
    import jaxmarl.environments

    monkeypatch.setitem(sys.modules, "brax", None)
    monkeypatch.setattr(jaxmarl.environments, "MABRAX_AVAILABLE", False)
    registry._build.cache_clear()
    try:
        with pytest.raises(EnvDependencyError, match=r"marlvault\[mabrax\]"):
            make_env("mabrax", "hopper_3x1")
        assert registry.missing_extra("mabrax") == "mabrax"
    finally:
        registry._build.cache_clear()


def test_cli_lists_action_spaces():
    result = CliRunner().invoke(app, ["envs", "--env", "mpe"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "simple_spread" in line]
    assert "discrete 5" in rows[0] and "continuous 5" in rows[1]


# --- SMAX ----------------------------------------------------------------------------------------
def _smax_avail(smax: _Jitted, state: JaxMarlState) -> np.ndarray:
    avail = smax.env.env.get_avail_actions(state.inner)
    return np.stack([np.asarray(avail[a], bool) for a in smax.env.env.agents])


def test_smax_reset_step_and_truncation(smax):
    state, ts = smax.reset(jax.random.PRNGKey(0))
    _check_types(smax.env, ts)
    assert int(ts.step_count) == 0 and not bool(ts.terminated | ts.truncated | ts.won)
    np.testing.assert_array_equal(ts.legal, _smax_avail(smax, state))
    # The armies start far apart: stop is legal, no enemy is in range, the moves are legal.
    assert ts.legal[:, :5].all() and not ts.legal[:, 5:].any()
    world = jax.jit(smax.env.env.get_world_state)(state.inner)
    np.testing.assert_array_equal(ts.state, world)
    rng = np.random.default_rng(1)
    for t in range(1, SMAX_LIMIT + 1):
        actions = [rng.choice(np.flatnonzero(legal)) for legal in np.asarray(ts.legal)]
        state, ts = smax.step(state, jnp.asarray(actions, jnp.int32))
        _check_types(smax.env, ts)
        np.testing.assert_array_equal(ts.legal, _smax_avail(smax, state))
        assert int(ts.step_count) == t and not bool(ts.terminated | ts.won)
        assert bool(ts.truncated) == (t == SMAX_LIMIT)
        assert np.all(ts.reward == ts.reward[0])  # one team reward for every ally


def _kill(env, state: JaxMarlState, allies_dead: bool, enemies_dead: bool) -> JaxMarlState:
    """``state`` with every ally and/or every enemy dead (the next step ends the battle)."""
    inner = state.inner.state
    allies = env.env.num_allies
    dead = jnp.zeros_like(inner.unit_alive)
    dead = dead.at[:allies].set(allies_dead).at[allies:].set(enemies_dead)
    inner = inner.replace(
        unit_alive=inner.unit_alive & ~dead,
        unit_health=jnp.where(dead, 0.0, inner.unit_health),
    )
    return state._replace(inner=state.inner.replace(state=inner))


def _battle_end(smax, state, allies_dead: bool, enemies_dead: bool):
    """Steps from ``state`` with every ally and/or enemy killed beforehand (all units stop)."""
    state = _kill(smax.env, state, allies_dead, enemies_dead)
    return smax.step(state, jnp.full((smax.env.spec.num_agents,), 4, jnp.int32))


def test_smax_termination_and_win(smax):
    state, _ = smax.reset(jax.random.PRNGKey(2))
    _, won = _battle_end(smax, state, allies_dead=False, enemies_dead=True)
    assert bool(won.terminated) and bool(won.won) and not bool(won.truncated)
    np.testing.assert_allclose(won.reward, 1.0)  # jaxmarl's win bonus, same for every ally
    _, lost = _battle_end(smax, state, allies_dead=True, enemies_dead=False)
    assert bool(lost.terminated) and not bool(lost.won)
    _, draw = _battle_end(smax, state, allies_dead=True, enemies_dead=True)
    assert bool(draw.terminated) and not bool(draw.won) and float(draw.reward[0]) == 0.0
    # Termination on the last step of the time limit wins over truncation.
    for _ in range(SMAX_LIMIT - 1):
        state, _ = smax.step(state, jnp.full((3,), 4, jnp.int32))
    _, last = _battle_end(smax, state, allies_dead=False, enemies_dead=True)
    assert int(last.step_count) == SMAX_LIMIT
    assert bool(last.terminated) and bool(last.won) and not bool(last.truncated)


# --- MPE -----------------------------------------------------------------------------------------
def test_mpe_truncates_at_time_limit_only(mpe):
    state, ts0 = mpe.reset(jax.random.PRNGKey(0))
    _check_types(mpe.env, ts0)
    assert ts0.legal.all() and np.array_equal(ts0.state, ts0.obs.reshape(-1))
    limit = mpe.env.spec.time_limit
    actions = jax.random.randint(jax.random.PRNGKey(1), (limit + 3, 3), 0, 5)
    out = []
    for a in actions:  # past the limit: the adapter keeps counting, jaxmarl never ends it
        state, ts = mpe.step(state, a)
        out.append(ts)
    ts = jax.tree.map(lambda *xs: np.stack(xs), *out)
    np.testing.assert_array_equal(ts.step_count, np.arange(1, limit + 4))
    assert not ts.terminated.any() and not ts.won.any()
    np.testing.assert_array_equal(ts.truncated, np.arange(1, limit + 4) >= limit)
    np.testing.assert_array_equal(ts.state, ts.obs.reshape(limit + 3, -1))


def test_mpe_rewards_are_individual(mpe):
    state, _ = mpe.reset(jax.random.PRNGKey(3))
    next_state, ts = mpe.step(state, jnp.array([1, 2, 3], jnp.int32))
    inner = mpe.env.env
    jaxmarl_rewards = jax.jit(inner.rewards)
    expected = jaxmarl_rewards(next_state.inner)
    np.testing.assert_allclose(ts.reward, [expected[a] for a in inner.agents], rtol=1e-6)
    # jaxmarl's simple spread: a collision costs the two colliding agents only.
    pos = next_state.inner.p_pos.at[1].set(next_state.inner.p_pos[0] + 0.01).at[2].set(5.0)
    rewards = jaxmarl_rewards(next_state.inner.replace(p_pos=pos))
    r = np.array([rewards[a] for a in inner.agents])
    assert r[0] == r[1] and r[0] - r[2] == pytest.approx(-inner.local_ratio)


def test_mpe_continuous_actions_are_clipped(mpe_cont):
    state, ts = mpe_cont.reset(jax.random.PRNGKey(0))
    _check_types(mpe_cont.env, ts)
    assert ts.legal.shape == (3, 5) and ts.legal.all()
    inside = jnp.array([[0.0, 1.0, 0.0, 0.5, 0.2]] * 3, jnp.float32)
    outside = jnp.array([[-3.0, 7.0, -1.0, 0.5, 0.2]] * 3, jnp.float32)
    _, a = mpe_cont.step(state, inside)
    _, b = mpe_cont.step(state, outside)
    np.testing.assert_array_equal(a.obs, b.obs)
    assert not np.array_equal(a.obs, ts.obs)  # the actions did move the agents


def _reference_autoreset(jitted: _Jitted, key, actions, won_first: bool):
    """What VecEnv must compute, env by env with the single-env jitted functions: on a done
    step, keep the step's reward and flags and take obs/legal/state/step_count from a reset
    whose key is split off that env's own key. ``won_first``: env 0 starts with the enemies dead.
    """
    steps, num_envs = actions.shape[:2]
    per_env = []
    keys = jax.random.split(key, num_envs)
    for b, (key_b, actions_b) in enumerate(zip(keys, np.swapaxes(actions, 0, 1), strict=True)):
        key_b, reset_key = jax.random.split(key_b)
        state, _ = jitted.reset(reset_key)
        if won_first and b == 0:
            state = _kill(jitted.env, state, allies_dead=False, enemies_dead=True)
        out = []
        for t in range(steps):
            state, ts = jitted.step(state, actions_b[t])
            if bool(ts.terminated | ts.truncated):
                key_b, reset_key = jax.random.split(key_b)
                state, first = jitted.reset(reset_key)
                ts = ts._replace(
                    obs=first.obs, legal=first.legal, state=first.state, step_count=first.step_count
                )
            out.append(ts)
        per_env.append(jax.tree.map(lambda *xs: np.stack(xs), *out))
    return jax.tree.map(lambda *xs: np.stack(xs, axis=1), *per_env)  # [T, B, ...]


def test_vec_env_autoreset_matches_reference(smax):
    """VecEnv "fast" (jitted scan) against the per-env reference ("naive" written out by hand).

    Env 0 starts with the enemies dead: it wins on step 1 alone (the fast scheme's one-by-one
    reset), later all three truncate together (its batch reset). SMAX only: the three families
    share the adapter code, and each VecEnv program costs seconds of compilation."""
    jitted, steps = smax, 2 * SMAX_LIMIT + 2
    n, num_envs, key = jitted.env.spec.num_agents, 3, jax.random.PRNGKey(4)
    actions = np.asarray(jax.random.randint(key, (steps, num_envs, n), 0, 4), np.int32)  # moves
    venv = VecEnv(jitted.env, num_envs=num_envs, autoreset="fast", loop_max=1)

    @jax.jit
    def run(key, actions):
        vstate, _ = venv.reset(key)
        first = jax.tree.map(lambda x: x[0], vstate.env_state)
        first = _kill(jitted.env, first, allies_dead=False, enemies_dead=True)
        env_state = jax.tree.map(lambda xs, x: xs.at[0].set(x), vstate.env_state, first)
        vstate = vstate._replace(env_state=env_state)

        def body(vstate, a):
            vstate, out = venv.step(vstate, a)
            return vstate, (out.timestep, out.metrics, out.final_state)

        return jax.lax.scan(body, vstate, actions)[1]

    fast, metrics, final_state = run(key, actions)
    expected = _reference_autoreset(jitted, key, actions, won_first=True)
    for field in fast._fields:  # floats may differ in the last bit between the two programs
        np.testing.assert_allclose(
            getattr(fast, field), getattr(expected, field), rtol=1e-5, atol=1e-6
        )
    assert bool(fast.won[0, 0]) and bool(metrics.win[0, 0]) and int(metrics.win.sum()) == 1
    assert fast.truncated[SMAX_LIMIT - 1].tolist() == [False, True, True]  # the others at 5
    assert fast.truncated[SMAX_LIMIT].tolist() == [True, False, False]  # env 0's 2nd episode
    # the world state reached by an episode's last step (MAPPO's truncation bootstrap) is kept
    # apart from the next episode's first state; elsewhere they are the same
    done = np.asarray(metrics.done)
    np.testing.assert_array_equal(np.asarray(final_state)[~done], np.asarray(fast.state)[~done])
    assert not np.allclose(np.asarray(final_state)[done], np.asarray(fast.state)[done])


# --- MABrax (brax is optional and not in the dev extra) ------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["ant_4x2", "halfcheetah_6x1", "hopper_3x1"])
def test_mabrax(scenario):
    pytest.importorskip("brax", reason="optional extra: pip install 'marlvault[mabrax]'")
    env = make_env("mabrax", scenario, time_limit=30)
    assert env.spec == dataclasses.replace(_static_spec("mabrax", scenario), time_limit=30)
    n, a = env.spec.num_agents, env.spec.action_dim
    state, ts = jax.jit(env.reset)(jax.random.PRNGKey(0))
    _check_types(env, ts)
    np.testing.assert_array_equal(ts.state, state.inner.obs[env.state_start :])

    @jax.jit
    def rollout(state, key):
        def body(state, k):
            return env.step(state, 3.0 * jax.random.normal(k, (n, a)))  # clipped to [-1, 1]

        return jax.lax.scan(body, state, jax.random.split(key, 30))[1]

    ts = rollout(state, jax.random.PRNGKey(1))
    assert np.all(ts.reward == ts.reward[:, :1])  # Brax's one reward, shared
    assert not ts.won.any() and not ts.truncated[:29].any()
    assert bool(ts.truncated[29]) == (not bool(ts.terminated[29]))
