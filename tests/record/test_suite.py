"""``marlvault dataset build``: the level rule, a tiny suite end to end (SIGKILL mid-build, then
the same command continues it), read back with flashbax as OG-MARL does, and bad input refused
with nothing overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.errors import DatasetError
from marlvault.record.suite import Candidate, SuiteConfig, choose_levels
from marlvault.tools.index import episode_table

ROOT = Path(__file__).resolve().parents[2]
TASK = ["matrax", "climbing-stateless"]
TRAIN = ["system.total_timesteps=4096", "arch.num_envs=8", "system.rollout_length=16",
         "arch.num_evaluation=4", "network.actor_hidden=16", "network.critic_hidden=16",
         "arch.num_eval_episodes=8", "logger.console=false", "logger.tensorboard=false"]  # fmt: skip
OPTIONS = ["--episodes", "24", "--eval-episodes", "8"]


def _cands(*scores: float) -> list[Candidate]:
    return [Candidate(f"step_{i}", f"/c/{i}", 100 * (i + 1), s) for i, s in enumerate(scores)]


def test_levels_take_the_checkpoints_nearest_their_targets():
    found = _cands(1.0, 3.0, 4.5, 9.0, 10.0, 8.0)  # random 0, best 10: medium 5, poor 1
    chosen = choose_levels(["good", "medium", "poor", "random"], found, 0.0)
    assert {lv: c.tag for lv, c in chosen.items()} == {
        "good": "step_4", "medium": "step_2", "poor": "step_0", "random": "random"}
    # each checkpoint serves one level: with two candidates, poor falls back to the other one
    chosen = choose_levels(["poor", "good"], _cands(10.0, 10.0), 0.0)
    assert chosen["good"].tag == "step_0" and chosen["poor"].tag == "step_1"
    assert list(chosen) == ["poor", "good"]  # the order asked for
    with pytest.raises(DatasetError, match="not above the random policy"):
        choose_levels(["good"], _cands(-3.0, -2.0), -2.0)
    with pytest.raises(DatasetError, match="no checkpoint left"):
        choose_levels(["good", "medium", "poor"], _cands(1.0, 2.0), 0.0)


def _wait_for(path: Path, ready, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if ready(json.loads(path.read_text())):
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    out = proc.stdout.read() if proc.poll() is not None else ""
    raise AssertionError(f"the build never reached the awaited stage: {out}")


def test_suite_survives_sigkill_and_reads_like_og_marl(tmp_path):
    out = tmp_path / "suite"
    argv = ["dataset", "build", *TASK, "--out", str(out), *OPTIONS, *TRAIN]
    proc = subprocess.Popen([sys.executable, "-m", "marlvault", *argv], cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    _wait_for(out / "suite.json", lambda m: "good" in m["levels"], proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed = json.loads((out / "suite.json").read_text())
    assert set(killed["levels"]) == {"good"}, "killed too late to test continuing"
    good_meta = out / killed["levels"]["good"]["vault"] / "metadata.json"
    stamp = good_meta.stat().st_mtime_ns

    result = CliRunner().invoke(app, argv)  # the same command continues the build
    assert result.exit_code == 0, result.output
    assert "good: done earlier, verified" in result.output
    assert "[train] done earlier" in result.output
    assert good_meta.stat().st_mtime_ns == stamp  # the finished level was kept, not rebuilt
    manifest = json.loads((out / "suite.json").read_text())
    assert manifest["levels"]["good"] == killed["levels"]["good"]
    assert not (out / ".staging").exists()

    from flashbax.vault import Vault as FlashbaxVault

    means = {}
    for level in ("good", "medium", "poor"):
        entry = manifest["levels"][level]
        rel = out / "marlvault" / "matrax"
        assert entry["vault"] == f"marlvault/matrax/climbing-stateless.vlt/{level.capitalize()}"
        fbx = FlashbaxVault(vault_name="climbing-stateless.vlt", rel_dir=str(rel),
                            vault_uid=level.capitalize()).read()  # fmt: skip
        exp = fbx.experience
        assert exp["actions"].shape[:2] == (1, entry["transitions"])  # B == 1, no padding
        ends = np.asarray(exp["terminals"][0].any(-1) | exp["truncations"][0].any(-1))
        assert ends.sum() == entry["episodes"] >= 24 and ends[-1]
        # returns from flashbax's arrays equal the episode table's and the card's figures
        cuts = np.flatnonzero(ends) + 1
        team = np.asarray(exp["rewards"][0], np.float64).mean(-1)
        rets = np.array([s.sum() for s in np.split(team, cuts)[:-1]])
        np.testing.assert_allclose(rets, episode_table(str(out / entry["vault"])).ret, atol=1e-9)
        np.testing.assert_allclose(rets.mean(), entry["stats"]["return_mean"], rtol=1e-9)
        means[level] = rets.mean()
    chosen = manifest["stages"]["select"]["chosen"]
    assert chosen["good"]["score"] >= max(chosen["medium"]["score"], chosen["poor"]["score"])
    assert len({c["tag"] for c in chosen.values()}) == 3
    card = (out / "README.md").read_text()
    assert manifest["command"] in card and (out / "returns.png").stat().st_size > 10_000
    assert f"{means['good']:.3f}" in card

    # --from-run reuses the kept checkpoints; --layout rows keeps the recording's parallel rows
    rows = tmp_path / "rows"
    res = CliRunner().invoke(app, ["dataset", "build", *TASK, "--out", str(rows), "--levels",
                                   "good", "--episodes", "24", "--eval-episodes", "8",
                                   "--layout", "rows", "--from-run", str(out / "training")])
    assert res.exit_code == 0, res.output
    entry = json.loads((rows / "suite.json").read_text())["levels"]["good"]
    assert entry["checkpoint"] == manifest["levels"]["good"]["checkpoint"]
    assert entry["stats"]["rows"] == 24 and entry["stats"]["complete"] >= 24


def test_bad_input_is_refused_and_nothing_is_overwritten(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["dataset", "build", *TASK, "--out", str(tmp_path / "a"),
                              "--levels", "good,great"])  # fmt: skip
    assert res.exit_code != 0 and "great" in res.output and "--levels good,medium,poor" in res.output
    assert not (tmp_path / "a").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["dataset", "build", *TASK, "--out", str(busy)])
    assert res.exit_code != 0 and "notes.txt" in res.output and "new --out" in res.output
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    assert (busy / "notes.txt").read_text() == "mine"

    run = tmp_path / "run"
    for step in (10, 20):  # two kept checkpoints, three levels asked for
        ckpt = run / "checkpoints" / f"step_{step:012d}"
        ckpt.mkdir(parents=True)
        (ckpt / "meta.json").write_text(json.dumps({"step": step}))
    res = runner.invoke(app, ["dataset", "build", *TASK, "--out", str(tmp_path / "b"),
                              "--from-run", str(run)])  # fmt: skip
    assert res.exit_code != 0, res.output
    assert "at least 3 kept checkpoints" in res.output and "found 2" in res.output
    assert "logger.keep_checkpoints=true" in res.output

    res = runner.invoke(app, ["dataset", "build", *TASK, "--out", str(tmp_path / "b"),
                              "--episodes", "10", "--from-run", str(run)])  # fmt: skip
    assert res.exit_code != 0 and "episodes=1000" in res.output and "episodes=10" in res.output
    assert "repeat the first command" in res.output

    with pytest.raises(Exception, match="set by dataset build itself"):
        SuiteConfig(*TASK, out=str(tmp_path / "c"), overrides=("logger.base_dir=x",))
    assert not (tmp_path / "c").exists()
