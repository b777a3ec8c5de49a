"""``marlvault offline train ...`` through typer's runner, on a tiny vault of LBF rollouts."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.envs import make_env

from . import rollouts

runner = CliRunner()


@pytest.fixture(scope="module")
def lbf_vault(tmp_path_factory) -> str:
    env = make_env("lbf", "8x8-2p-2f-coop")
    tree = rollouts.rollout(env, rollouts.random_policy, 4, 120, jax.random.key(0))
    path = str(tmp_path_factory.mktemp("v") / "lbf.vlt")
    return rollouts.write_vault(path, tree, env)


def test_train_bc_from_the_command_line(lbf_vault, tmp_path):
    result = runner.invoke(app, [
        "offline", "train", "bc", f"vault={lbf_vault}", "system.num_updates=30",
        "system.hidden=16", "arch.num_evaluation=2", "arch.num_eval_episodes=4",
        "arch.final_eval_episodes=4", f"logger.base_dir={tmp_path}", "logger.run_name=run",
        "logger.tensorboard=false",
    ])
    assert result.exit_code == 0, result.output
    assert "final eval return" in result.output and "lbf/8x8-2p-2f-coop" in result.output
    run = Path(tmp_path) / "run"
    assert (run / "checkpoints" / "best" / "meta.json").is_file()
    logs = list(run.glob("*.json"))
    assert logs, list(run.iterdir())
    data = json.loads(logs[0].read_text())
    seed = data["lbf"]["8x8-2p-2f-coop"]["bc"]["seed_42"]
    assert len(seed["absolute_metrics"]["episode_return"]) >= 4


@pytest.mark.parametrize("algo", ["iql-bcq", "qmix-bcq"])
def test_train_bcq_from_the_command_line(algo, lbf_vault, tmp_path):
    result = runner.invoke(app, [
        "offline", "train", algo, f"vault={lbf_vault}", "system.num_updates=20",
        "system.hidden=16", "system.rnn_size=16", "system.seq_len=8", "system.batch_size=8",
        "system.threshold=0.5", "arch.num_evaluation=1", "arch.num_eval_episodes=2",
        "arch.final_eval_episodes=2", f"logger.base_dir={tmp_path}", "logger.run_name=run",
        "logger.tensorboard=false",
    ])
    assert result.exit_code == 0, result.output
    assert "final eval return" in result.output
    assert (Path(tmp_path) / "run" / "checkpoints" / "best" / "meta.json").is_file()


def test_errors_map_to_exit_codes(lbf_vault, tmp_path):
    result = runner.invoke(app, ["offline", "train", "bc", "system.num_updates=3"])
    assert result.exit_code == 2 and "vault=PATH" in result.output
    result = runner.invoke(app, ["offline", "train", "bc", f"vault={lbf_vault}", "system.nope=1"])
    assert result.exit_code == 2 and "system.lr" in result.output  # lists the valid keys
    result = runner.invoke(app, ["offline", "train", "iql-cql", f"vault={lbf_vault}",
                                 "env=lbf", "scenario=15x15-4p-3f"])
    assert result.exit_code == 40 and "agents" in result.output
    result = runner.invoke(app, ["offline", "train", "bc", f"vault={tmp_path / 'none'}"])
    assert result.exit_code == 11


def test_help_lists_every_algorithm_and_its_keys():
    from marlvault.offline.train import ALGORITHMS

    listing = runner.invoke(app, ["offline", "train", "--help"])
    assert listing.exit_code == 0
    assert all(name in listing.output for name in ALGORITHMS)
    for name in ALGORITHMS:
        lines = runner.invoke(app, ["offline", "train", name, "--help"]).output.splitlines()
        (line,) = [x for x in lines if x.split()[:1] == ["system.num_updates"]]
        assert "int = " in line and "updates" in line.split("=", 1)[1]
        (line,) = [x for x in lines if x.split()[:1] == ["logger.base_dir"]]
        assert "str = results/offline" in line  # the offline run's own default, not the section's
    lines = runner.invoke(app, ["offline", "train", "qmix-bcq", "--help"]).output.splitlines()
    keys = {x.split()[0] for x in lines if x.split()}
    assert {"system.threshold", "system.bc_weight", "system.mixer_embed"} <= keys
    lines = runner.invoke(app, ["offline", "train", "iddpg-bc", "--help"]).output.splitlines()
    (line,) = [x for x in lines if x.split()[:1] == ["system.normalise_obs"]]
    assert "bool = True" in line and "mean" in line
