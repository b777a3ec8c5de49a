"""Data-parallel offline training (``marlvault.offline.parallel``): how the vault is shared out
over the devices, and replicas that stay identical because gradients are averaged.

The 2-process x 2-device run against 1 process x 4 devices is in the slow
``tests/online/test_multiprocess.py`` (it needs ``marlvault launch``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marlvault.errors import DatasetError
from marlvault.offline.dataset import Share, plan_share
from marlvault.vault import Vault

from .helpers import synthetic_tree

ROOT = Path(__file__).resolve().parents[2]


def _vault(tmp_path: Path, rows: int, steps: int) -> Vault:
    path = tmp_path / f"v{rows}x{steps}.vlt"
    with Vault.create(path, synthetic_tree(rows, steps)) as v:
        v.append(synthetic_tree(rows, steps))
    return Vault.open(path)


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


def test_four_devices_train_their_shares_and_stay_identical(tmp_path, multi_device_env):
    path = tmp_path / "v.vlt"
    with Vault.create(path, synthetic_tree(4, 64)) as v:
        v.append(synthetic_tree(4, 64))
    res = subprocess.run(
        [sys.executable, "-m", "tests.offline.parallel_worker", str(path), "bc", "memory,stream",
         "10"],
        cwd=ROOT, env=multi_device_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    runs = res.stdout.split("devices ")[1:]
    assert len(runs) == 2
    for mode, out in zip(("memory", "stream"), runs, strict=True):
        assert out.startswith("4 shares [0, 1, 2, 3]") and f"mode {mode}" in out
        assert "replicas identical" in out and "moved" in out
        assert np.isfinite(float(out.split("'loss': ")[1].split(",")[0].split("}")[0]))
