"""Several processes, one run: ``marlvault launch`` (2 processes x 2 forced CPU devices) trains to
the same parameters as one process with 4 devices; bad ``dist`` settings fail fast and clearly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.checkpoint import load_policy
from marlvault.cli import app
from marlvault.distributed import DistConfig, cluster_detected, config_from_overrides
from marlvault.errors import ConfigError
from marlvault.launch import child_env, free_port
from marlvault.vault import Vault

ROOT = Path(__file__).resolve().parents[2]
TINY = ["env=matrax", "scenario=climbing-stateless", "system.total_timesteps=4096",
        "arch.num_envs=8", "system.rollout_length=16", "arch.num_evaluation=2",
        "network.actor_hidden=16", "network.critic_hidden=16", "arch.num_eval_episodes=8",
        "logger.tensorboard=false"]  # fmt: skip


def _marlvault(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "marlvault", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_unreachable_coordinator_fails_fast_with_the_address():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    res = _marlvault("train", "ippo", f"dist.coordinator={address}", "dist.num_processes=2",
                     "dist.process_id=1", "dist.timeout_s=2", timeout=60)  # fmt: skip
    assert res.returncode == 50, res.stderr
    assert time.monotonic() - t0 < 30
    assert address in res.stderr and "fix:" in res.stderr and "dist.timeout_s" in res.stderr


def test_dist_settings_are_checked():
    assert config_from_overrides(["dist.num_processes=3", "dist.process_id=2",
                                  "dist.coordinator=h:1", "arch.seed=1"]) == DistConfig(
        coordinator="h:1", num_processes=3, process_id=2)  # fmt: skip
    with pytest.raises(ConfigError, match="dist.coordinator=HOST:PORT"):
        DistConfig(num_processes=2)
    with pytest.raises(ConfigError, match="dist.process_id"):
        DistConfig(coordinator="h:1", num_processes=2, process_id=2)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        DistConfig(coordinator="nohost", num_processes=2)
    assert cluster_detected({"SLURM_NTASKS": "4"}) and not cluster_detected({"SLURM_NTASKS": "1"})
    assert not cluster_detected({})
    flags = child_env(2, {"XLA_FLAGS": "--a --xla_force_host_platform_device_count=8"})["XLA_FLAGS"]
    assert flags == "--a --xla_force_host_platform_device_count=2"
    res = CliRunner().invoke(app, ["launch", "--nproc", "2", "--", "train", "ippo",
                                   "dist.process_id=1"])  # fmt: skip
    assert res.exit_code == 2 and "drop the dist.* overrides" in res.output


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_four_devices(tmp_path):
    """Slow (about a minute here): gloo's loopback collectives make the 2-process run slow."""
    base_mp, base_sp = tmp_path / "mp", tmp_path / "sp"
    res = _marlvault("launch", "--nproc", "2", "--devices-per-proc", "2", "--", "train", "ippo",
                     *TINY, f"logger.base_dir={base_mp}",
                     f"record.path={tmp_path / 'mp.vlt'}")  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:]
    lines = res.stdout.splitlines()
    for i in (0, 1):  # every process logs its evaluations
        assert sum(x.startswith(f"[{i}] step") for x in lines) == 2
    assert sum("done: final eval return" in x for x in lines) == 1  # the summary: process 0
    assert any(x.startswith("[0]") and "done: final" in x for x in lines)

    env = child_env(4, dict(os.environ))
    res = _marlvault("train", "ippo", *TINY, f"logger.base_dir={base_sp}",
                     f"record.path={tmp_path / 'sp.vlt'}", env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    run = "ippo_matrax_climbing-stateless_seed42"
    _, mp = load_policy(base_mp / run / "checkpoints" / "last")
    _, sp = load_policy(base_sp / run / "checkpoints" / "last")
    for a, b in zip(jax.tree.leaves(mp), jax.tree.leaves(sp), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert (base_mp / run / "metrics.json").read_text() != ""

    # one vault written by both processes (rows 0-3 by process 0, 4-7 by process 1) holds
    # exactly what the one-process run recorded, every step of every row
    mp_vault, sp_vault = Vault.open(tmp_path / "mp.vlt"), Vault.open(tmp_path / "sp.vlt")
    assert mp_vault.metadata["marlvault"]["writers"] == {"processes": 2, "rows_per_process": 4}
    assert (mp_vault.num_rows, mp_vault.num_steps) == (sp_vault.num_rows, sp_vault.num_steps)
    assert mp_vault.keys == sp_vault.keys and mp_vault.num_steps == 4096 // 8
    a, b = mp_vault.read_flat(), sp_vault.read_flat()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert len(mp_vault.episodes) == len(sp_vault.episodes)

    # offline training on that vault: each process reads its devices' rows, gradients averaged
    offline = ["offline", "train", "bc", f"vault={tmp_path / 'mp.vlt'}", "system.num_updates=60",
               "arch.num_evaluation=2", "system.batch_size=32", "logger.tensorboard=false"]
    res = _marlvault("launch", "--nproc", "2", "--devices-per-proc", "2", "--", *offline,
                     f"logger.base_dir={tmp_path / 'off_mp'}")  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:]
    res = _marlvault(*offline, f"logger.base_dir={tmp_path / 'off_sp'}", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    run = "bc_matrax_climbing-stateless_seed42"
    _, mp = load_policy(tmp_path / "off_mp" / run / "checkpoints" / "last")
    _, sp = load_policy(tmp_path / "off_sp" / run / "checkpoints" / "last")
    for a, b in zip(jax.tree.leaves(mp), jax.tree.leaves(sp), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


_FAKE_SRUN = """#!/bin/bash
# stands in for SLURM's srun on one machine: SLURM_NTASKS copies of the command, each with the
# variables srun gives a task; exits with the first failure
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i "$@" > "$LOGS/task$i.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""


@pytest.mark.slow
def test_slurm_example_records_one_vault_under_a_stand_in_srun(tmp_path):
    """Slow (~30 s): ``examples/slurm_record.sbatch`` run by bash as written, with ``srun``
    replaced by a script that starts its tasks on this machine. jax.distributed finds the run
    from SLURM's variables alone; both tasks record into one vault."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(_FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    (bin_dir / "python").write_text(f'#!/bin/bash\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    job = free_port() % 4096  # jax's SLURM port: 61440 + job id % 4096
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", LOGS=str(tmp_path),
               SLURM_JOB_ID=str(job), SLURM_NTASKS="2", SLURM_STEP_NODELIST="localhost",
               SLURM_STEP_NUM_NODES="1", VAULT=str(tmp_path / "run.vlt"),
               PYTHONPATH=str(ROOT), EXTRA=" ".join([*TINY, f"logger.base_dir={tmp_path}"]))
    res = subprocess.run(["bash", str(ROOT / "examples" / "slurm_record.sbatch")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    logs = [(tmp_path / f"task{i}.log").read_text() for i in (0, 1)]
    assert res.returncode == 0, logs[0][-2000:] + logs[1][-2000:]
    vault = Vault.open(tmp_path / "run.vlt")
    assert vault.metadata["marlvault"]["writers"] == {"processes": 2, "rows_per_process": 4}
    assert vault.num_steps == 4096 // 8 and vault.missing_chunks() == []



@pytest.mark.slow
def test_killed_writer_process_leaves_a_prefix_and_the_same_command_resumes(tmp_path):
    """Slow (~2 min): SIGKILL of process 1 of a recording run under ``marlvault launch``; the
    launcher stops process 0 (and with it the OCDBT coordinator); the vault verifies, and the
    same command with ``record.resume=true`` continues every row after a cut."""
    vault = tmp_path / "run.vlt"
    cmd = [sys.executable, "-m", "marlvault", "launch", "--nproc", "2", "--", "train", "ippo",
           *TINY, "system.total_timesteps=2000000", "arch.num_evaluation=400",
           "record.chunk_steps=16", f"record.path={vault}", f"logger.base_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until some steps are committed
        if (vault / "metadata.json").exists() and Vault.open(vault).num_steps >= 64:
            break
        time.sleep(1)
    child = subprocess.run(["pgrep", "-f", f"record.path={vault}.*dist.process_id=1"],
                           capture_output=True, text=True).stdout.split()  # fmt: skip
    assert child, "process 1 not found"
    os.kill(int(child[0]), 9)
    t0 = time.monotonic()
    assert proc.wait(timeout=120) != 0 and time.monotonic() - t0 < 90
    killed = Vault.open(vault)
    steps = killed.num_steps
    assert steps >= 64 and steps % 16 == 0 and killed.missing_chunks() == []
    before = killed.read()

    res = _marlvault("launch", "--nproc", "2", "--", "train", "ippo", *TINY,
                     "record.chunk_steps=16", f"record.path={vault}", "record.resume=true",
                     f"logger.base_dir={tmp_path / 'again'}")  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:]
    resumed = Vault.open(vault)
    assert resumed.num_steps == steps + 4096 // 8
    after = resumed.read(stop=steps)
    np.testing.assert_array_equal(after["observations"], before["observations"])
    ended = after["terminals"][:, -1, 0] + after["truncations"][:, -1, 0]
    assert (ended > 0).all()  # every row's open episode was cut where the new run starts
