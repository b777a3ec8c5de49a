"""The optional matrax adapter (``pip install 'marlvault[matrax]'``)."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.envs import VecEnv, list_envs, make_env, registry
from marlvault.errors import EnvDependencyError


def test_matrax_scenarios_listed():
    names = list_envs()["matrax"]
    assert "climbing-stateless" in names and "penalty-25-stateful" in names


def test_missing_matrax_raises_dependency_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matrax", None)  # makes `import matrax` fail
    registry._build.cache_clear()
    try:
        with pytest.raises(EnvDependencyError, match=r"marlvault\[matrax\]"):
            make_env("matrax", "penalty-50-stateless")
        result = CliRunner().invoke(app, ["envs", "--env", "matrax"])
        assert result.exit_code == 0 and "pip install" in result.output
    finally:
        registry._build.cache_clear()


def test_climbing_payoffs_and_truncation():
    pytest.importorskip("matrax", reason="optional extra: pip install 'marlvault[matrax]'")
    env = make_env("matrax", "climbing-stateful", time_limit=3)
    assert (env.spec.num_agents, env.spec.obs_dim, env.spec.action_dim) == (2, 2, 3)
    venv = VecEnv(env, num_envs=1)
    vstate, ts = jax.jit(venv.reset)(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(ts.obs[0], -np.ones((2, 2)))  # no previous actions yet
    assert ts.legal.all()
    step = jax.jit(venv.step)
    # Climbing game payoffs (common payoff): (0,0)=11, (2,1)=6, (0,1)=-30.
    rewards, truncs = [], []
    for a in ([0, 0], [2, 1], [0, 1]):
        vstate, out = step(vstate, jnp.array([a], jnp.int32))
        rewards.append(float(out.timestep.reward[0, 0]))
        truncs.append(bool(out.timestep.truncated[0]))
        assert not bool(out.timestep.terminated[0])
        if not truncs[-1]:
            np.testing.assert_array_equal(out.timestep.obs[0], [a, a])  # both see both actions
    assert rewards == [11.0, 6.0, -30.0] and truncs == [False, False, True]
    assert float(out.metrics.episode_return[0]) == pytest.approx(11 + 6 - 30)
    assert int(out.timestep.step_count[0]) == 0
