"""marl-eval JSON / TensorBoard logging and orbax checkpoints (evaluation: tests/cli/test_train)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from marlvault.checkpoint import load_policy, read_meta, save_checkpoint
from marlvault.errors import CheckpointError
from marlvault.logging import RunInfo, RunLogger
from marlvault.online import ippo

from .helpers import tiny_config


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


@pytest.mark.parametrize("has_win", [True, False])
def test_console_line_shows_the_win_rate_for_envs_with_wins(tmp_path, capsys, has_win):
    info = RunInfo("smax", "3m", "rec-ippo", 0, total_steps=100, has_win=has_win)
    logger = RunLogger(tmp_path, info, console=True, tensorboard=False, json=True)
    eps = {"episode_return": np.array([1.0, 2.0]), "episode_length": np.array([9, 9]),
           "win_rate": np.array([1.0, 0.0])}
    logger.log(100, 10.0, eps, {})
    logger.close()
    out = capsys.readouterr().out
    assert ("win 0.50" in out) == has_win, out
    run = json.loads((tmp_path / "metrics.json").read_text())["smax"]["3m"]["rec-ippo"]["seed_0"]
    assert run["step_0"]["win_rate"] == [1.0, 0.0]


def _fake_params(hidden: int = 16) -> dict:
    rng = np.random.default_rng(0)
    layer = lambda i, o: {"kernel": rng.normal(size=(i, o)).astype(np.float32),  # noqa: E731
                          "bias": np.zeros(o, np.float32)}  # fmt: skip
    return {"actor": {"params": {"Dense_0": layer(10, hidden), "Dense_1": layer(hidden, 5)}},
            "critic": {"params": {"Dense_0": layer(10, hidden), "Dense_1": layer(hidden, 1)}}}


def test_checkpoint_round_trip_and_errors(tmp_path):
    cfg = tiny_config("env=lbf", "scenario=8x8-2p-2f-coop")
    params = _fake_params()
    folder = save_checkpoint(tmp_path / "ckpt", "best", params, cfg, step=10, return_mean=0.25)
    assert read_meta(folder)["step"] == 10
    config, restored = load_policy(tmp_path / "ckpt", target=params)
    assert config == cfg and isinstance(config, ippo.Config)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(a, b)
    # overwriting keeps exactly one good copy
    save_checkpoint(tmp_path / "ckpt", "best", params, cfg, step=20, return_mean=0.5)
    assert read_meta(tmp_path / "ckpt")["step"] == 20
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best"]
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_policy(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="do not match"):
        load_policy(folder, target=_fake_params(hidden=8))
