"""One vault, several writer processes (``marlvault.vault.shared``), at the vault level.

Each process is a real Python process (``group_writer.py``) writing through tensorstore's OCDBT
coordinator, which process 0 runs. Checked: the rows each process owns, the data, the vault
index every row has reached, flashbax reading it, the group lock, and SIGKILL of a member and of
the leader (the coordinator) followed by a resume that continues each row without duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from marlvault.errors import VaultError, VaultLockedError
from marlvault.vault import Vault
from marlvault.vault.shared import WriterGroup

SCRIPT = Path(__file__).with_name("group_writer.py")
ROOT = Path(__file__).resolve().parents[2]


def _start(
    d: Path, pid: int, group: str, steps: int, *extra: str, env: dict | None = None
) -> subprocess.Popen:
    env = dict(env or os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(SCRIPT), str(d), str(pid), "2", group, str(steps), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 90) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return out


def _wait_line(proc: subprocess.Popen, prefix: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"exited before {prefix!r}: {proc.stderr.read()[-2000:]}")
    raise AssertionError(f"no {prefix!r} within {timeout} s")


def _expected_obs(steps: int) -> np.ndarray:
    t = np.arange(steps)
    return (np.arange(4)[:, None] * 1000 + t[None, :]).astype(np.float32)


def _reset(d: Path) -> None:
    for name in ("coordinator", "ready"):
        (d / name).unlink(missing_ok=True)


def test_two_writers_fill_their_rows_and_flashbax_reads_the_vault(tmp_path):
    procs = [_start(tmp_path, i, "g1", 43) for i in (0, 1)]
    outs = [_finish(p) for p in procs]
    assert all("closed 45" in o for o in outs)
    vault = Vault.open(tmp_path / "v.vlt")
    assert (vault.num_rows, vault.num_steps) == (4, 45)
    assert vault.metadata["marlvault"]["writers"] == {"processes": 2, "rows_per_process": 2}
    data = vault.read()
    np.testing.assert_array_equal(data["observations"][..., 0], _expected_obs(45))
    assert len(vault.episodes) == 4 * 6 + 4  # 6 ended episodes per row (every 7 steps), 1 open
    assert vault.missing_chunks() == []
    assert not (tmp_path / "v.vlt" / "marlvault.lock").exists()
    from typer.testing import CliRunner

    from marlvault.cli import app

    shown = CliRunner().invoke(app, ["vault", "info", str(tmp_path / "v.vlt")]).output
    assert "written by 2 processes, 2 rows each" in shown
    assert "steps committed by each process: [45, 45]" in shown

    from flashbax.vault import Vault as FbxVault

    fbx = FbxVault(rel_dir=str(tmp_path.parent), vault_name=tmp_path.name, vault_uid="v.vlt")
    got = fbx.read().experience
    np.testing.assert_array_equal(np.asarray(got["observations"])[..., 0], _expected_obs(45))


def test_group_lock_refuses_other_runs_and_single_writers(tmp_path):
    leader = _start(tmp_path, 0, "g1", 2000, "--pause", "0.01")
    _wait_line(leader, "appended")
    other = WriterGroup(1, 2, "another-run", open(tmp_path / "coordinator").read())
    try:
        with pytest.raises(VaultLockedError, match="another run"):
            Vault.open(tmp_path / "v.vlt", "a", group=other)
        with pytest.raises(VaultLockedError, match="expected no other writer"):
            Vault.open(tmp_path / "v.vlt", "a")
        with pytest.raises(VaultError, match="created for 3"):
            Vault.open(tmp_path / "v.vlt", "a", group=WriterGroup(1, 3, "g1", "x:1"))
    finally:
        leader.kill()
        leader.communicate()


def test_member_killed_leader_settles_and_resume_continues_every_row(tmp_path):
    leader = _start(tmp_path, 0, "g1", 60, "--pause", "0.05", "--wait-s", "3")
    member = _start(tmp_path, 1, "g1", 400, "--pause", "0.05")
    _wait_line(member, "appended 20")
    member.send_signal(signal.SIGKILL)
    member.communicate()
    t0 = time.monotonic()
    _finish(leader)
    assert time.monotonic() - t0 < 30  # waits wait_s for the dead member, then stops
    vault = Vault.open(tmp_path / "v.vlt")
    killed_at = vault.num_steps
    assert 0 < killed_at < 60  # the member's committed chunks, not the leader's 60 steps
    assert vault.writer_progress == [60, killed_at]  # each process's rows, as far as committed
    np.testing.assert_array_equal(vault.read()["observations"][..., 0], _expected_obs(killed_at))
    assert vault.missing_chunks() == []
    last_open = vault.read(start=killed_at - 1, keys="truncations")["truncations"][:, 0]

    _reset(tmp_path)  # a new run of the same command, another group id
    procs = [_start(tmp_path, i, "g2", 30, "--resume") for i in (0, 1)]
    outs = [_finish(p) for p in procs]
    assert all(f"opened {killed_at}" in o for o in outs)
    vault = Vault.open(tmp_path / "v.vlt")
    assert vault.num_steps == killed_at + 30
    data = vault.read()
    np.testing.assert_array_equal(data["observations"][..., 0], _expected_obs(killed_at + 30))
    ended = data["terminals"][:, killed_at - 1] + data["truncations"][:, killed_at - 1]
    assert (ended > 0).all() and (last_open == 0).all()  # every row's open episode was cut


def test_leader_killed_member_fails_fast_and_the_vault_keeps_its_prefix(tmp_path):
    leader = _start(tmp_path, 0, "g1", 4000, "--pause", "0.02")
    member = _start(tmp_path, 1, "g1", 4000, "--pause", "0.02")
    _wait_line(member, "appended 30")
    leader.send_signal(signal.SIGKILL)
    leader.communicate()
    t0 = time.monotonic()
    out, err = member.communicate(timeout=120)
    assert member.returncode != 0 and time.monotonic() - t0 < 60
    assert "coordinator" in err and "fix:" in err
    vault = Vault.open(tmp_path / "v.vlt")
    killed_at = vault.num_steps
    assert killed_at >= 8  # whole chunks committed by both before the leader died
    np.testing.assert_array_equal(vault.read()["observations"][..., 0], _expected_obs(killed_at))
    assert vault.missing_chunks() == []

    _reset(tmp_path)  # the dead leader's lock is stale (its pid is gone): the next run takes it
    procs = [_start(tmp_path, i, "g2", 10, "--resume") for i in (0, 1)]
    assert all(f"opened {killed_at}" in _finish(p) for p in procs)
    vault = Vault.open(tmp_path / "v.vlt")
    np.testing.assert_array_equal(
        vault.read()["observations"][..., 0], _expected_obs(killed_at + 10)
    )


def test_on_a_loopback_s3_server_a_killed_writer_then_resume(tmp_path, monkeypatch):
    pytest.importorskip("moto.server")
    from tests.vault.loopback import moto_s3

    with moto_s3("mv-group") as endpoint:
        creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}  # fmt: skip
        for key, value in creds.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        url = "s3://mv-group/runs/v.vlt"
        leader = _start(tmp_path, 0, "g1", 60, "--url", url, "--pause", "0.05", "--wait-s", "3")
        member = _start(tmp_path, 1, "g1", 400, "--url", url, "--pause", "0.05")
        _wait_line(member, "appended 20")
        member.send_signal(signal.SIGKILL)  # a writer dies mid-run
        member.communicate()
        _finish(leader)
        vault = Vault.open(url)
        killed_at = vault.num_steps
        assert 0 < killed_at < 60 and vault.writer_progress == [60, killed_at]
        _reset(tmp_path)  # the same command again, resuming
        procs = [_start(tmp_path, i, "g2", 10, "--url", url, "--resume") for i in (0, 1)]
        assert all(f"opened {killed_at}" in _finish(p) for p in procs)
        vault = Vault.open(url)
        np.testing.assert_array_equal(
            vault.read()["observations"][..., 0], _expected_obs(killed_at + 10)
        )
        assert vault.metadata["marlvault"]["writers"]["processes"] == 2


def test_a_member_that_cannot_reach_the_coordinator_fails_in_bounded_time():
    import socket

    from marlvault.errors import DistributedError
    from marlvault.record.group import _reach

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match=address) as info:
        _reach(address, 1.0)
    assert time.monotonic() - t0 < 10 and "fix:" in str(info.value)
