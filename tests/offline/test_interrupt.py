"""Ctrl-C during ``marlvault offline train`` through the installed console script: the current
block finishes, the run folder stays usable, the command exits 0 and says it was interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from marlvault.checkpoint import load_policy
from marlvault.envs import make_env
from marlvault.offline.train import run_config_class

from . import rollouts

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "marlvault"
STOP_WITHIN_S = 60.0
"""Bound on SIGINT -> exit: the block in flight (well under a second here), its evaluation and
checkpoints, and interpreter shutdown; a run that ignored the signal would take many minutes."""


@pytest.fixture(scope="module")
def lbf_vault(tmp_path_factory) -> str:
    env = make_env("lbf", "8x8-2p-2f-coop")
    tree = rollouts.rollout(env, rollouts.random_policy, 4, 120, jax.random.key(0))
    return rollouts.write_vault(str(tmp_path_factory.mktemp("v") / "lbf.vlt"), tree, env)


def _start(lbf_vault: str, tmp_path: Path) -> subprocess.Popen:
    # 2000 blocks of 100 updates: minutes of work, so only a stop on the signal ends it early
    cmd = [str(SCRIPT), "offline", "train", "bc", f"vault={lbf_vault}", "system.hidden=16",
           "system.batch_size=8", "system.num_updates=200000", "arch.num_evaluation=2000",
           "arch.num_eval_episodes=4", "arch.final_eval_episodes=4",
           f"logger.base_dir={tmp_path}", "logger.run_name=run", "logger.tensorboard=false"]
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_evaluation(proc: subprocess.Popen) -> list[str]:
    lines, deadline = [], time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if line.startswith("step"):
            return lines
    proc.kill()
    pytest.fail("no evaluation line before the deadline:\n" + "".join(lines))


@pytest.mark.skipif(not SCRIPT.exists(), reason="console script not installed")
def test_sigint_stops_after_the_block_and_leaves_a_usable_run(lbf_vault, tmp_path):
    proc = _start(lbf_vault, tmp_path)
    lines = _wait_for_evaluation(proc)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"still running {STOP_WITHIN_S} s after SIGINT:\n" + "".join(lines) + out)
    stop_s = time.perf_counter() - sent
    text = "".join(lines) + out
    sps = [float(x.split()[3].replace(",", "")) for x in text.splitlines() if x.startswith("step")]
    print(f"SIGINT -> exit: {stop_s:.2f} s; a block of 100 updates: {100 / max(sps[-1], 1):.3f} s")

    assert proc.returncode == 0, text
    assert stop_s < STOP_WITHIN_S, text
    assert "SIGINT received" in text and "interrupted after update" in text, text
    steps = [int(x.split()[1].replace(",", "")) for x in text.splitlines() if x.startswith("step")]
    assert 1 <= len(steps) < 2000 and steps[-1] < 200_000  # stopped early, after whole blocks

    run = tmp_path / "run"
    config, params = load_policy(run / "checkpoints" / "best")
    assert isinstance(config, run_config_class("bc")) and config.system.hidden == (16,)
    assert jax.tree.leaves(params)
    _, last = load_policy(run / "checkpoints" / "last")
    assert jax.tree.structure(last) == jax.tree.structure(params)
    metrics = json.loads((run / "metrics.json").read_text())
    seed = metrics["lbf"]["8x8-2p-2f-coop"]["bc"]["seed_42"]
    logged = [k for k in seed if k.startswith("step_")]
    assert len(logged) == len(steps), (logged, steps)
    assert "absolute_metrics" not in seed  # no final evaluation after an interruption
