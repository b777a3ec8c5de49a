"""``marlvault train``: help lists keys, unknown keys fail fast, a tiny run prints a summary."""

from __future__ import annotations

import json
import logging

import jax
from typer.testing import CliRunner

from marlvault.checkpoint import load_policy
from marlvault.cli import app
from marlvault.envs.registry import make_env

runner = CliRunner()


def test_help_lists_config_keys():
    result = runner.invoke(app, ["train", "ippo", "--help"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for key, tail in [("system.rollout_length", "int = 128"), ("arch.num_envs", "int = 32"),
                      ("network.actor_hidden", "tuple[int, ...] = 128,128")]:
        (line,) = [x for x in lines if x.split()[:1] == [key]]
        assert tail in line and len(line.split(tail)[1].strip()) > 10, line  # + one-line meaning
    assert "env=NAME" in result.output


def test_unknown_key_exits_2_and_lists_valid_keys():
    result = runner.invoke(app, ["train", "ippo", "system.rollout_lenght=64"])
    assert result.exit_code == 2
    assert "system.rollout_lenght" in result.output
    assert "system.rollout_length" in result.output and "arch.num_envs" in result.output


def test_bad_value_exits_2():
    result = runner.invoke(app, ["train", "mappo", "system.total_timesteps=lots"])
    assert result.exit_code == 2
    assert "system.total_timesteps" in result.output and "int" in result.output


def test_tiny_mappo_run_prints_summary_and_writes_outputs(tmp_path, caplog):
    args = [
        "train", "mappo", "env=lbf", "scenario=8x8-2p-2f-coop", "arch.num_envs=4",
        "arch.num_eval_episodes=4", "arch.num_evaluation=2", "system.rollout_length=8",
        "system.total_timesteps=64", "network.actor_hidden=16", "network.critic_hidden=16",
        f"logger.base_dir={tmp_path}", "logger.console=false",
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "final eval return" in result.output and "training SPS" in result.output
    # the final evaluation of the best (host-copied) parameters reuses the evaluator that every
    # evaluation ran: lowered once, not again for parameters laid out differently
    lowered = [r.getMessage() for r in caplog.records]
    assert len([m for m in lowered if "MLIR" in m and "evaluate_local" in m]) == 1, lowered[-20:]
    run_dir = tmp_path / "mappo_lbf_8x8-2p-2f-coop_seed42"
    data = json.loads((run_dir / "metrics.json").read_text())
    run = data["lbf"]["8x8-2p-2f-coop"]["mappo"]["seed_42"]
    assert run["step_1"]["step_count"] == 64 and "absolute_metrics" in run
    # evaluation: one first episode per eval env, none longer than the time limit
    spec = make_env("lbf", "8x8-2p-2f-coop").spec
    for entry in (run["step_0"], run["step_1"], run["absolute_metrics"]):
        lengths = entry["episode_length"]
        assert len(lengths) == len(entry["episode_return"]) == 4
        assert all(1 <= n <= spec.time_limit for n in lengths)
    assert (run_dir / "checkpoints" / "best" / "meta.json").exists()
    # MAPPO: the saved critic reads the global state (+ agent id), restorable for evaluation
    config, params = load_policy(run_dir / "checkpoints" / "last")
    assert config.system.centralised_critic is True
    kernel = params["critic"]["params"]["MLPTorso_0"]["Dense_0"]["kernel"]
    assert kernel.shape == (spec.state_dim + spec.num_agents, 16)
