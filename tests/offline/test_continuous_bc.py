"""Behaviour cloning on continuous actions: a small MPE simple-spread (continuous) vault of
scripted rollouts, the tanh-Gaussian likelihood checked by hand, learning progress, the CLI end
to end (training, evaluation in the recorded env, run folder) and the other algorithms' refusal.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.envs import make_env
from marlvault.errors import DatasetError
from marlvault.offline import bc
from marlvault.offline.dataset import DatasetConfig, OfflineDataset
from marlvault.offline.windows import SequenceBatch

from . import rollouts

runner = CliRunner()
SCENARIO = "simple_spread_v3-continuous"


def _scripted(key, obs, legal):
    """A fixed-mean noisy continuous policy: actions depend on the observation (learnable)."""
    mean = jax.nn.sigmoid(2.0 * obs[..., :legal.shape[-1]] - 0.5)
    noise = 0.05 * jax.random.normal(key, mean.shape)
    return jnp.clip(mean + noise, 0.0, 1.0).astype(jnp.float32)  # the env's bounds


def continuous_tree(rows: int = 4, steps: int = 100, seed: int = 0):
    env = make_env("mpe", SCENARIO)
    tree = rollouts.rollout(env, _scripted, rows, steps, jax.random.key(seed))
    del tree["infos"]["legals"]  # continuous recordings carry no masks
    return env, tree


@pytest.fixture(scope="module")
def mpe_vault(tmp_path_factory) -> str:
    env, tree = continuous_tree()
    s = env.spec
    space = {"kind": "continuous", "size": s.action_dim, "low": float(s.action_low),
             "high": float(s.action_high)}
    path = str(tmp_path_factory.mktemp("v") / "mpe.vlt")
    return rollouts.write_vault(path, tree, env, {"action_space": space})


def test_dataset_keeps_float_actions_and_bounds(mpe_vault):
    ds = OfflineDataset(mpe_vault, DatasetConfig(seq_len=1, stride=1, continuous_ok=True))
    spec = ds.spec
    assert spec.continuous and not spec.has_legals and not spec.bounds_assumed
    assert (spec.num_agents, spec.obs_dim, spec.action_dim) == (3, 18, 5)
    assert (spec.action_low, spec.action_high) == (0.0, 1.0)
    steps = ds.host_steps()
    assert steps.actions.dtype == np.float32 and steps.actions.shape == (4, 100, 3, 5)
    batch = jax.jit(ds.sampler(8))(ds.device_data(), jax.random.key(0))
    assert batch.actions.shape == (1, 8, 3, 5) and batch.actions.dtype == jnp.float32
    streamed = OfflineDataset(mpe_vault, DatasetConfig(seq_len=4, continuous_ok=True,
                                                       mode="stream", shuffle_windows=16))
    batch = next(streamed.batches(8, seed=0))
    assert batch.actions.shape == (4, 8, 3, 5) and batch.legal.shape == (5, 8, 3, 5)
    assert float(batch.actions.min()) >= 0.0 and float(batch.actions.max()) <= 1.0


def test_refused_for_discrete_algorithms_with_the_fix(mpe_vault):
    with pytest.raises(DatasetError, match=r"actions.*\(N, A\) = \(3, 5\).*iql-cql.*fix: train `bc`"):
        OfflineDataset(mpe_vault, DatasetConfig(seq_len=1, algorithm="iql-cql"))


def test_bounds_assumed_without_metadata_and_checked(tmp_path):
    env, tree = continuous_tree(rows=2, steps=10)
    path = rollouts.write_vault(str(tmp_path / "og.vlt"), tree, env)  # actions in [0, 1]
    ds = OfflineDataset(path, DatasetConfig(seq_len=1, continuous_ok=True))
    assert ds.spec.bounds_assumed and (ds.spec.action_low, ds.spec.action_high) == (-1.0, 1.0)
    tree["actions"] = tree["actions"] * 3.0 - 1.0  # now outside [-1, 1]
    bad = rollouts.write_vault(str(tmp_path / "bad.vlt"), tree, env)
    with pytest.raises(DatasetError, match="outside the bounds"):
        OfflineDataset(bad, DatasetConfig(seq_len=1, continuous_ok=True)).host_steps()


def test_loss_is_the_tanh_gaussian_log_likelihood_by_hand():
    low, high = 0.0, 2.0
    space = bc.ActionSpace(2, True, low, high)
    mean = jnp.array([[[[0.3, -0.5]]], [[[1.0, 0.0]]]])  # [L=2, K=1, N=1, A=2]
    log_std = jnp.log(jnp.full_like(mean, 0.5))
    actions = jnp.array([[[[1.2, 0.4]]], [[[1.9, 1.0]]]])
    mask = jnp.array([[1.0], [0.0]])  # the second step is outside the episode
    loss, metrics = bc.continuous_bc_loss((mean, log_std), actions, mask, space)
    total = 0.0
    for a, m in zip(np.asarray(actions[0, 0, 0]), np.asarray(mean[0, 0, 0]), strict=True):
        y = 2 * (a - low) / (high - low) - 1  # in (-1, 1)
        u = math.atanh(y)
        gauss = -0.5 * ((u - m) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
        da_du = (high - low) / 2 * (1 - math.tanh(u) ** 2)
        total += gauss - math.log(da_du)
    np.testing.assert_allclose(float(loss), -total, rtol=1e-5)
    greedy = low + (np.tanh(np.asarray(mean[0, 0, 0])) + 1) * (high - low) / 2
    np.testing.assert_allclose(float(metrics["action_mse"]),
                               np.mean((greedy - np.asarray(actions[0, 0, 0])) ** 2), rtol=1e-5)


@pytest.mark.parametrize("recurrent", [False, True])
def test_loss_decreases(mpe_vault, recurrent):
    config = bc.Config(recurrent=recurrent, hidden=(32,), rnn_size=16, seq_len=5, batch_size=8,
                       lr=3e-3, num_updates=40)
    needs = bc.data_needs(config)
    ds = OfflineDataset(mpe_vault, DatasetConfig(seq_len=needs.seq_len, stride=needs.stride,
                                                 continuous_ok=needs.continuous_ok))
    algo = bc.make_algorithm(config, ds.spec)
    data, sample = ds.device_data(), ds.sampler(algo.batch_size)
    fixed: SequenceBatch = sample(data, jax.random.key(1))
    update = jax.jit(algo.update)
    state = algo.init(jax.random.key(0))
    losses = []
    for _ in range(40):
        state, m = update(state, fixed)
        losses.append(float(m["loss"]))
    assert losses[-1] < losses[0] - 1.0, losses
    hidden = algo.init_hidden(2)
    obs = fixed.obs[0, :2]
    _, acts = algo.act(algo.params(state), hidden, obs, jnp.ones((2, 3, 5)), jnp.ones(2, bool))
    assert acts.shape == (2, 3, 5) and float(acts.min()) >= 0.0 and float(acts.max()) <= 1.0


def test_cli_trains_and_evaluates_bc_on_continuous_actions(mpe_vault, tmp_path):
    result = runner.invoke(app, [
        "offline", "train", "bc", f"vault={mpe_vault}", "system.num_updates=20",
        "system.hidden=16", "arch.num_evaluation=2", "arch.num_eval_episodes=4",
        "arch.final_eval_episodes=4", "arch.eval_epsilon=0.1", f"logger.base_dir={tmp_path}",
        "logger.run_name=run", "logger.tensorboard=false",
    ])
    assert result.exit_code == 0, result.output
    assert f"mpe/{SCENARIO}" in result.output and "continuous (5) in [0, 1]" in result.output
    assert "final eval return" in result.output and "nan" not in result.output
    run = Path(tmp_path) / "run"
    assert (run / "checkpoints" / "best" / "meta.json").is_file()


def test_cli_iql_cql_refuses_continuous_actions(mpe_vault, tmp_path):
    result = runner.invoke(app, ["offline", "train", "iql-cql", f"vault={mpe_vault}",
                                 f"logger.base_dir={tmp_path}"])
    assert result.exit_code == DatasetError.exit_code, result.output
    assert "continuous" in result.output and "fix: train `bc`" in result.output
