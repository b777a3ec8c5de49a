"""Continuous actions end to end: IPPO and rec-IPPO on MPE simple spread (continuous), recorded
and replayed; offline BC trains on the data, the discrete offline algorithms refuse it with the
fix.

One tiny training run (shared by the tests of this module) records a vault; a saved checkpoint
is then rolled out by ``marlvault record`` with epsilon exploration. The recorded actions must be
the squashed, in-bounds actions the environment took, ``(B, T, N, A)`` float32, with no legal
mask, the bounds in the metadata and behaviour log-probabilities that match the saved policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.checkpoint import load_policy
from marlvault.cli import app
from marlvault.envs.registry import make_env
from marlvault.errors import DatasetError
from marlvault.online import ippo, losses
from marlvault.record.train import train_and_record
from marlvault.vault import Vault

from .helpers import tiny_config, tiny_rec_config

ENV = ["env.env_name=mpe", "env.scenario=simple_spread_v3-continuous"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("continuous")
    cfg = tiny_config(*ENV, "system.total_timesteps=128", "arch.num_evaluation=2",
                      f"logger.base_dir={root}", "logger.run_name=r", "logger.console=false",
                      f"record.path={root / 'train.vlt'}", "record.extras=log_prob")  # fmt: skip
    result, recorded = train_and_record(cfg)
    return cfg, result, root


def test_recorded_actions_are_the_in_bounds_env_actions(run):
    cfg, result, root = run
    spec = make_env("mpe", "simple_spread_v3-continuous").spec
    assert spec.continuous and (spec.action_low, spec.action_high) == (0.0, 1.0)
    with Vault.open(str(root / "train.vlt")) as v:
        data = v.read()
        meta = v.metadata["marlvault"]
        keys = v.keys
    a = data["actions"]
    assert a.dtype == np.float32 and a.shape[2:] == (spec.num_agents, spec.action_dim)
    assert a.shape[1] == result.env_steps // cfg.arch.num_envs
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.05  # squashed samples, spread
    assert "infos.legals" not in keys
    assert meta["action_space"] == {"kind": "continuous", "size": 5, "low": 0.0, "high": 1.0}
    assert np.isfinite(data["infos"]["log_prob"]).all()
    info = CliRunner().invoke(app, ["vault", "info", str(root / "train.vlt")])
    assert "actions: continuous, 5 components in [0.0, 1.0]" in info.output, info.output


def test_record_from_a_continuous_checkpoint_matches_the_policy_density(run):
    cfg, _, root = run
    best = root / "r" / "checkpoints" / "best"
    out = root / "rec.vlt"
    res = CliRunner().invoke(app, ["record", str(best), "episodes=2", f"path={out}",
                                   "mode=sampled", "epsilon=0.5", "seed=3",
                                   "extras=log_prob"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with Vault.open(str(out)) as v:
        assert int(v.episodes["complete"].sum()) == 2
        data = v.read()
    obs, act = data["observations"], data["actions"]
    assert act.dtype == np.float32 and 0.0 <= act.min() and act.max() <= 1.0
    # epsilon=0.5: about half the actions are uniform in the box, the rest policy samples;
    # every recorded log_prob is the saved policy's density of the recorded action
    policy_config, params = load_policy(str(best))
    spec = make_env("mpe", "simple_spread_v3-continuous").spec
    nets = ippo.make_networks(spec, policy_config)
    out_ = nets.actor.apply(params["actor"], losses.actor_input(jnp.asarray(obs), cfg.system))
    dist = nets.space.distribution(out_, jnp.ones(act.shape, bool))
    assert dist.mean.shape == act.shape
    logp = np.asarray(dist.log_prob(dist.from_env(jnp.asarray(act))))
    np.testing.assert_allclose(logp, data["infos"]["log_prob"], rtol=1e-3, atol=1e-2)


def test_ppo_ratio_is_one_before_the_first_gradient_step():
    """The loss recomputes the stored raw samples' log-density exactly (no atanh round trip)."""
    cfg = tiny_config(*ENV)
    learner = ippo.make_train(cfg, return_trajectories=True, updates_per_call=1)
    state = learner.init(jax.random.PRNGKey(0))
    rollout = jax.jit(ippo.make_rollout(
        ippo.VecEnv(make_env("mpe", "simple_spread_v3-continuous"), cfg.arch.num_envs),
        learner.nets, cfg))  # fmt: skip
    _, traj, (last, _) = rollout(state.params, state)
    batch = losses.make_batch(traj, last, cfg.system)
    assert batch.action.shape[-1] == 5 and batch.action.dtype == jnp.float32
    _, info = losses.ppo_loss(state.params, batch, learner.nets, cfg.system,
                              jnp.array([0.0, 1.0]))  # fmt: skip
    assert float(info.approx_kl) == pytest.approx(0.0, abs=1e-6)
    assert float(info.clip_frac) == 0.0


def test_rec_ippo_records_continuous_actions(tmp_path):
    """The recurrent system takes the same tanh-Gaussian head from the action space."""
    path = tmp_path / "rec.vlt"
    cfg = tiny_rec_config(*ENV, "system.rollout_length=25", "system.total_timesteps=200",
                          f"logger.base_dir={tmp_path}", "logger.console=false",
                          f"record.path={path}", "record.extras=log_prob")  # fmt: skip
    result, _ = train_and_record(cfg)
    assert result.algorithm == "rec-ippo" and np.isfinite(result.final_return_mean)
    with Vault.open(str(path)) as v:
        data = v.read()
    a = data["actions"]
    assert a.dtype == np.float32 and a.shape[1:] == (50, 3, 5)
    assert 0.0 <= a.min() and a.max() <= 1.0 and np.isfinite(data["infos"]["log_prob"]).all()


def test_offline_bc_trains_and_iql_cql_refuses_continuous_actions_with_the_fix(run):
    _, _, root = run
    vault = f"vault={root / 'train.vlt'}"
    res = CliRunner().invoke(app, ["offline", "train", "bc", vault, "system.num_updates=10",
                                   "system.hidden=16", "arch.num_evaluation=1",
                                   "arch.num_eval_episodes=2", "arch.final_eval_episodes=2",
                                   f"logger.base_dir={root / 'off'}"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "continuous (5) in [0, 1]" in res.output and "final eval return" in res.output
    res = CliRunner().invoke(app, ["offline", "train", "iql-cql", vault,
                                   f"logger.base_dir={root / 'off'}"])  # fmt: skip
    assert res.exit_code == DatasetError.exit_code, res.output
    assert "continuous" in res.output and "fix: train `bc`" in res.output
