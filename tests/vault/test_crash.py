"""Crash safety: SIGKILL a writing process at random moments; readers during appends."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from marlvault.vault import Vault

from . import crash_worker
from .helpers import assert_episodes, assert_tree_equal


@pytest.fixture(scope="module")
def ctx():
    """A forkserver that has imported marlvault (fast children, no tensorstore threads forked)."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["marlvault.vault", "tests.vault.crash_worker"])
    return context


def _check_prefix(path: str) -> int:
    vault = Vault.open(path)
    n = vault.num_steps
    assert_tree_equal(vault.read(), crash_worker.stream(0, n))
    assert_episodes(vault.episodes, crash_worker.stream(0, n))
    return n


def _crash_trials(ctx, path: str, trials: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    counts = [0]
    for trial in range(trials):
        proc = ctx.Process(target=crash_worker.writer, args=(path, seed * 1000 + trial, 10**6))
        proc.start()
        # random moments; the last three later, so that a loaded machine still commits something
        late = trial >= trials - 3
        time.sleep(float(rng.uniform(1.0, 3.0) if late else rng.uniform(0.02, 0.5)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL, "the writer should still have been running"
        if os.path.exists(os.path.join(path, "metadata.json")):
            counts.append(_check_prefix(path))
            assert counts[-1] >= counts[-2], counts  # committed steps never go back
    return counts


def _finish(ctx, path: str, counts: list[int]) -> None:
    target = counts[-1] + 50
    proc = ctx.Process(target=crash_worker.writer, args=(path, 7, target))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert _check_prefix(path) == target  # resumed exactly at the committed count: no duplicates


def test_sigkill_leaves_a_prefix(ctx, tmp_path):
    path = str(tmp_path / "crash")
    counts = _crash_trials(ctx, path, trials=20, seed=1)
    assert counts[-1] > 0, f"no trial committed anything: {counts}"
    _finish(ctx, path, counts)


@pytest.mark.slow
def test_sigkill_many_trials(ctx, tmp_path):
    path = str(tmp_path / "crash")
    counts = _crash_trials(ctx, path, trials=150, seed=2)
    _finish(ctx, path, counts)


def test_reader_process_sees_consistent_prefix(ctx, tmp_path):
    path = str(tmp_path / "conc")
    Vault.create(path, crash_worker.stream(0, 1), chunks=8).close()
    proc = ctx.Process(target=crash_worker.writer, args=(path, 3, 400, 0.5))
    proc.start()
    reader = Vault.open(path)
    seen = [0]
    while proc.is_alive() or seen[-1] < 400:
        n = reader.refresh()
        assert n >= seen[-1]
        seen.append(n)
        if n:
            lo = max(0, n - 30)
            got = reader.read(lo, n)
            assert_tree_equal(got, crash_worker.stream(lo, n))
        if not proc.is_alive() and n < 400:
            break
        time.sleep(0.01)
    proc.join()
    assert proc.exitcode == 0
    assert reader.refresh() == 400
    assert len(set(seen)) > 3, f"reader saw too few distinct commits: {sorted(set(seen))}"
    assert_episodes(reader.episodes, crash_worker.stream(0, 400))


def test_stale_tensorstore_lock_file_is_not_reused(tmp_path):
    """A killed writer can leave ``manifest.ocdbt.__lock``; tensorstore would reuse it untruncated."""
    path = str(tmp_path / "stale")
    with Vault.create(path, crash_worker.stream(0, 1), chunks=8) as v:
        v.append(crash_worker.stream(0, 8))
    with open(os.path.join(path, "manifest.ocdbt.__lock"), "wb") as fh:
        fh.write(b"x" * 5000)
    with Vault.open(path, mode="a") as v:
        v.append(crash_worker.stream(8, 16))
    assert _check_prefix(path) == 16
