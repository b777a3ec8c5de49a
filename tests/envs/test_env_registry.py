"""Registry, specs, shapes and dtypes of every scenario, and the CLI table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.envs import list_envs, make_env, scenario_info
from marlvault.errors import ConfigError, EnvNotFoundError

# The core envs (jumanji is a hard dependency). The optional ones have their own test files:
# test_matrax_env.py (matrax), test_jaxmarl_envs.py (smax, mpe, mabrax).
ALL = [(env, sc) for env, scs in list_envs().items() for sc in scs if env in ("rware", "lbf")]

# Expected sizes, worked out by hand from the scenario definitions:
# RWARE sensor_range 1 -> 8 own + 8*5 other agents + 9*2 shelves = 66 features, 5 actions.
# LBF vector observer: 3 values (x, y, level) per food and per agent, 6 actions.
EXPECTED = {
    ("rware", "tiny-2ag"): (2, 66, 5, 500),
    ("rware", "tiny-4ag"): (4, 66, 5, 500),
    ("rware", "small-4ag"): (4, 66, 5, 500),
    ("lbf", "8x8-2p-2f-coop"): (2, 3 * (2 + 2), 6, 100),
    ("lbf", "2s-8x8-2p-2f-coop"): (2, 3 * (2 + 2), 6, 100),
    ("lbf", "10x10-3p-3f"): (3, 3 * (3 + 3), 6, 100),
    ("lbf", "2s-10x10-3p-3f"): (3, 3 * (3 + 3), 6, 100),
    ("lbf", "15x15-4p-3f"): (4, 3 * (4 + 3), 6, 100),
    ("lbf", "15x15-4p-5f"): (4, 3 * (4 + 5), 6, 100),
}


def test_list_envs_names():
    envs = list_envs()
    assert envs["rware"] == ["tiny-2ag", "tiny-4ag", "small-4ag"]
    assert {"8x8-2p-2f-coop", "2s-8x8-2p-2f-coop", "10x10-3p-3f", "15x15-4p-5f"} <= set(
        envs["lbf"]
    )
    assert set(EXPECTED) == set(ALL)


def test_rware_scenario_definitions():
    cfg = {sc: scenario_info("rware", sc)["config"] for sc in list_envs()["rware"]}
    assert cfg["tiny-2ag"]["shelf_rows"] == 1 and cfg["small-4ag"]["shelf_rows"] == 2
    for c in cfg.values():
        assert (c["shelf_columns"], c["column_height"], c["sensor_range"]) == (3, 8, 1)
    env = make_env("rware", "small-4ag")
    assert env.env.request_queue_size == 4  # request queue = number of agents
    assert env.env.grid_size == ((8 + 1) * 2 + 2, 3 * 3 + 1)
    assert scenario_info("lbf", "2s-8x8-2p-2f-coop")["config"]["fov"] == 2


@pytest.mark.parametrize("env_name,scenario", ALL)
def test_spec_and_timestep_shapes(env_name, scenario):
    env = make_env(env_name, scenario)
    spec = env.spec
    n, o, a, limit = EXPECTED[(env_name, scenario)]
    assert (spec.num_agents, spec.obs_dim, spec.action_dim, spec.time_limit) == (n, o, a, limit)
    assert spec.state_dim == n * o and spec.has_state and not spec.has_win
    # Shapes and dtypes by tracing only (no compilation: keeps the suite fast).
    state, ts0 = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    _, ts1 = jax.eval_shape(env.step, state, jax.ShapeDtypeStruct((n,), jnp.int32))
    for ts in (ts0, ts1):
        assert ts.obs.shape == (n, o) and ts.obs.dtype == jnp.float32
        assert ts.legal.shape == (n, a) and ts.legal.dtype == jnp.bool_
        assert ts.state.shape == (n * o,) and ts.state.dtype == jnp.float32
        assert ts.reward.shape == (n,) and ts.reward.dtype == jnp.float32
        assert ts.terminated.shape == () and ts.terminated.dtype == jnp.bool_
        assert ts.truncated.shape == () and ts.truncated.dtype == jnp.bool_
        assert ts.step_count.shape == () and ts.step_count.dtype == jnp.int32


@pytest.mark.parametrize("env_name,scenario", [("rware", "tiny-2ag"), ("lbf", "15x15-4p-5f")])
def test_timestep_values(env_name, scenario):
    env = make_env(env_name, scenario)
    n = env.spec.num_agents
    state, ts0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
    _, ts1 = jax.jit(env.step)(state, jnp.zeros((n,), jnp.int32))
    for ts, count in ((ts0, 0), (ts1, 1)):
        assert int(ts.step_count) == count
        assert bool(jnp.all(ts.legal[:, 0]))  # no-op is always legal
        assert jnp.array_equal(ts.state, ts.obs.reshape(-1))
        assert not bool(ts.terminated | ts.truncated)
    assert float(jnp.abs(ts0.reward).sum()) == 0.0
    # raw agent view: agents see different things (no agent id needed to tell them apart here)
    assert not jnp.array_equal(ts0.obs[0], ts0.obs[1])


def test_unknown_env_lists_valid_names():
    with pytest.raises(EnvNotFoundError) as info:
        make_env("smacv2", "3m")
    msg = str(info.value)
    assert "smacv2" in msg and "rware" in msg and "lbf" in msg and "matrax" in msg
    assert isinstance(info.value, KeyError)


def test_unknown_scenario_lists_valid_names():
    with pytest.raises(EnvNotFoundError) as info:
        make_env("rware", "huge-99ag")
    msg = str(info.value)
    assert "huge-99ag" in msg
    for sc in ("tiny-2ag", "tiny-4ag", "small-4ag"):
        assert sc in msg


def test_overrides():
    env = make_env("rware", "tiny-2ag", time_limit=7)
    assert env.spec.time_limit == 7
    with pytest.raises(ConfigError, match="tim_limit"):
        make_env("rware", "tiny-2ag", tim_limit=7)
    with pytest.raises(ConfigError, match="time_limit"):
        make_env("lbf", "8x8-2p-2f-coop", time_limit=0)


def test_cli_envs_table():
    result = CliRunner().invoke(app, ["envs"])
    assert result.exit_code == 0, result.output
    for _, scenario in ALL:
        assert scenario in result.output
    row = next(line for line in result.output.splitlines() if "small-4ag" in line)
    cells = [c.strip() for c in row.replace("│", "|").split("|") if c.strip()]
    assert cells == ["rware", "small-4ag", "4", "66", "discrete 5", "264", "500"]


def test_cli_envs_unknown_env_fails():
    result = CliRunner().invoke(app, ["envs", "--env", "nope"])
    assert result.exit_code == EnvNotFoundError.exit_code
    assert result.output.startswith("error: unknown environment 'nope'") and "rware" in result.output


def test_cli_envs_info():
    result = CliRunner().invoke(app, ["envs", "info", "lbf", "2s-8x8-2p-2f-coop"])
    assert result.exit_code == 0, result.output
    assert "fov" in result.output and "state_dim: 24" in result.output


def test_scenario_info_fields():
    info = scenario_info("rware", "tiny-4ag", time_limit=100)
    assert info["time_limit"] == 100 and info["config"]["time_limit"] == 100
    assert (info["num_agents"], info["obs_dim"], info["state_dim"]) == (4, 66, 264)
    assert info["env_name"] == "rware" and info["scenario"] == "tiny-4ag"
