"""Evaluation, marl-eval JSON / TensorBoard logging and orbax checkpoints."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from marlvault.checkpoint import load_policy, read_meta, save_checkpoint
from marlvault.envs.registry import make_env
from marlvault.errors import CheckpointError
from marlvault.logging import RunInfo, RunLogger
from marlvault.online import ippo
from marlvault.online.evaluate import make_evaluator, summarise
from marlvault.online.run import make_policy

from .helpers import tiny_config


@pytest.fixture(scope="module")
def lbf_learner():
    cfg = tiny_config("env=lbf", "scenario=8x8-2p-2f-coop")
    learner = ippo.make_train(cfg, updates_per_call=1)
    return learner, learner.init(jax.random.PRNGKey(0))


def test_evaluation_scores_each_env_first_episode(lbf_learner):
    learner, state = lbf_learner
    env = make_env("lbf", "8x8-2p-2f-coop")
    evaluate = make_evaluator(env, make_policy(learner), 6, greedy=False)
    m = evaluate(state.params.actor, jax.random.PRNGKey(1))
    assert m.episode_return.shape == (6,)
    lengths = np.asarray(m.episode_length)
    assert ((lengths >= 1) & (lengths <= env.spec.time_limit)).all()
    assert np.isfinite(np.asarray(m.episode_return)).all()
    # an untrained sampled policy rarely finishes LBF early: lengths differ across envs
    assert len(set(lengths.tolist())) > 1 or lengths[0] == env.spec.time_limit
    s = summarise(m)
    assert set(s) >= {"return_mean", "return_std", "length_mean", "win_rate"}


def test_marl_eval_json_layout_and_tensorboard(tmp_path):
    info = RunInfo("rware", "tiny-2ag", "ippo", 7, total_steps=200)
    logger = RunLogger(tmp_path, info, console=False, tensorboard=True, json=True)
    eps = {"episode_return": np.array([1.0, 2.0, 3.0]), "episode_length": np.array([5, 5, 5])}
    logger.log(100, 1000.0, eps, {"total_loss": 0.5})
    logger.log(200, 1000.0, eps, {"total_loss": 0.4})
    logger.log_absolute(eps)
    logger.close()
    data = json.loads((tmp_path / "metrics.json").read_text())
    run = data["rware"]["tiny-2ag"]["ippo"]["seed_7"]
    assert run["step_0"]["step_count"] == 100 and run["step_1"]["step_count"] == 200
    assert run["step_1"]["episode_return"] == [1.0, 2.0, 3.0]
    assert run["absolute_metrics"]["episode_return"] == [1.0, 2.0, 3.0]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_round_trip_and_errors(tmp_path, lbf_learner):
    learner, state = lbf_learner
    params = state.params._asdict()
    folder = save_checkpoint(tmp_path / "ckpt", "best", params, learner.config, step=10,
                             return_mean=0.25)  # fmt: skip
    assert read_meta(folder)["step"] == 10
    config, restored = load_policy(tmp_path / "ckpt", target=state.params)
    assert config == learner.config
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(a, b)
    # overwrite keeps one good copy
    save_checkpoint(tmp_path / "ckpt", "best", params, learner.config, step=20, return_mean=0.5)
    assert read_meta(tmp_path / "ckpt")["step"] == 20
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_policy(tmp_path / "missing")
    wrong = jax.tree.map(lambda x: np.zeros((*x.shape[:-1], x.shape[-1] + 1)), params)
    with pytest.raises(CheckpointError, match="do not match"):
        load_policy(folder, target=wrong)
