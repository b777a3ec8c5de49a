"""Data-parallel offline training (``marlvault.offline.parallel``): how the vault is shared out
over the devices, replicas that stay identical because gradients are averaged, and every family
of algorithms finishing its updates on several devices (no initialiser that can wedge XLA's CPU
thread pool).

The 2-process x 2-device run against 1 process x 4 devices is in the slow
``tests/online/test_multiprocess.py`` (it needs ``marlvault launch``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from lapack_calls import batched, lapack_calls

from marlvault.errors import DatasetError
from marlvault.offline.dataset import Share, plan_share
from marlvault.offline.train import ALGORITHMS
from marlvault.offline.windows import DataSpec, ObsStats
from marlvault.vault import Vault

from .helpers import A, N, O, synthetic_tree

ROOT = Path(__file__).resolve().parents[2]


def _vault(tmp_path: Path, rows: int, steps: int) -> Vault:
    path = tmp_path / f"v{rows}x{steps}.vlt"
    with Vault.create(path, synthetic_tree(rows, steps)) as v:
        v.append(synthetic_tree(rows, steps))
    return Vault.open(path)


TINY = ("system.hidden=8", "system.rnn_size=8", "system.seq_len=5", "system.batch_size=8")

FAMILIES = {
    # a 64x64 critic kernel: a QR big enough that the vmapped twin-critic init hung (stack_inits)
    "iddpg-bc": ("system.critic_hidden=64,64",),  # continuous actor-critic, policy_delay=2
    "qmix-cql": ("system.mixer_embed=8", "system.hyper_hidden=8"),  # discrete value-based
}


def _family_vault(tmp: Path, algo: str) -> Path:
    tree = synthetic_tree(4, 64)
    if ALGORITHMS[algo].data_needs(ALGORITHMS[algo].config()).continuous_ok:
        tree["actions"] = np.tanh(tree["observations"][..., :2])  # [-1, 1] assumed, no bounds
        del tree["infos"]["legals"]
    path = tmp / f"{algo}.vlt"
    with Vault.create(path, tree) as v:
        v.append(tree)
    return path


@pytest.fixture(scope="module")
def four_device_runs(tmp_path_factory) -> dict[str, list[str]]:
    """One 4-device worker process for every job of this module (a hang fails after 300 s):
    BC 10 updates in memory and streaming, then 3 updates of each family in memory."""
    tmp = tmp_path_factory.mktemp("parallel")
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    bc = tmp / "bc.vlt"
    with Vault.create(bc, synthetic_tree(4, 64)) as v:
        v.append(synthetic_tree(4, 64))
    jobs = {"bc": f"{bc} bc memory,stream 10"}
    for algo, extra in FAMILIES.items():
        jobs[algo] = " ".join([str(_family_vault(tmp, algo)), algo, "memory", "3", *TINY, *extra])
    res = subprocess.run([sys.executable, "-m", "tests.offline.parallel_worker", *jobs.values()],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    outputs = re.split(r"^job (\d+)$", res.stdout, flags=re.M)[1:]  # [number, text, ...]
    by_job: dict[int, list[str]] = {}
    for number, text in zip(outputs[::2], outputs[1::2], strict=True):
        by_job.setdefault(int(number), []).append(text.split("devices ", 1)[1])
    return {name: by_job[i] for i, name in enumerate(jobs)}


def test_rows_split_evenly_over_the_devices(tmp_path):
    v = _vault(tmp_path, 4, 48)
    assert [plan_share(v, i, 2) for i in (0, 1)] == [Share(0, 2, 0, 48), Share(2, 4, 0, 48)]
    assert [plan_share(v, i, 4).row0 for i in range(4)] == [0, 1, 2, 3]


def test_one_row_is_cut_into_pieces_at_episode_starts(tmp_path):
    v = _vault(tmp_path, 1, 120)
    pieces = [plan_share(v, i, 3) for i in range(3)]
    assert pieces[0].start == 0 and pieces[-1].stop == 120
    assert all(a.stop == b.start for a, b in zip(pieces[:-1], pieces[1:], strict=True))  # contiguous, no overlap
    starts = set(v.episodes["start"].tolist())
    assert all(p.start in starts for p in pieces)  # no episode is split
    assert all(20 <= p.stop - p.start <= 60 for p in pieces)  # near a third each


def test_shares_that_cannot_be_made_are_refused_with_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="4 rows to split over the run's 3 devices"):
        plan_share(_vault(tmp_path, 4, 48), 0, 3)
    with pytest.raises(DatasetError, match="expected at least 8 episodes"):
        plan_share(_vault(tmp_path, 1, 24), 0, 8)


def test_four_devices_train_their_shares_and_stay_identical(four_device_runs):
    runs = four_device_runs["bc"]
    assert len(runs) == 2
    for mode, out in zip(("memory", "stream"), runs, strict=True):
        assert out.startswith("4 shares [0, 1, 2, 3]") and f"mode {mode}" in out
        assert "replicas identical" in out and "moved" in out
        assert np.isfinite(float(out.split("'loss': ")[1].split(",")[0].split("}")[0]))


@pytest.mark.parametrize("algo", sorted(FAMILIES))
def test_each_family_finishes_its_updates_on_four_devices(four_device_runs, algo):
    (out,) = four_device_runs[algo]
    assert out.startswith("4 shares [0, 1, 2, 3]")
    assert "replicas identical" in out and "moved" in out
    losses = re.findall(r"'\w*loss': (\S+?)[,}]", out)
    assert losses and all(np.isfinite(float(x)) for x in losses)


def _spec(continuous: bool) -> DataSpec:
    stats = ObsStats(np.zeros((N, O + A), np.float32), np.ones((N, O + A), np.float32))
    return DataSpec(num_rows=4, num_steps=64, num_agents=N, obs_dim=O + A, action_dim=A,
                    state_dim=N * (O + A), has_legals=not continuous, has_next_obs=False,
                    add_agent_ids=True, continuous=continuous, obs_stats=stats)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_no_initialiser_batches_a_lapack_call(algo):
    """A batched LAPACK call (e.g. a vmapped orthogonal init's QR) blocks a thread of XLA's CPU
    pool on work queued to the same pool; one program per device then hangs (stack_inits)."""
    entry = ALGORITHMS[algo]
    config = entry.config()
    algorithm = entry.make(config, _spec(entry.data_needs(config).continuous_ok))
    calls = lapack_calls(jax.jit(algorithm.init).lower(jax.random.key(0)).as_text())
    assert calls, "no LAPACK call found: the pattern no longer matches the lowering"
    assert not batched(calls), f"{algo}: batched LAPACK calls {batched(calls)}; fix: initialise " \
        "one network at a time (marlvault.offline.actor_critic.stack_inits)"
