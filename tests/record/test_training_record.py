"""What the vault holds equals what the learner produced, rows are continuous, episodes agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marlvault.errors import VaultExistsError
from marlvault.vault import Vault

from .record_worker import run

ROOT = Path(__file__).resolve().parents[2]


def _fold(x: np.ndarray) -> np.ndarray:
    """[U, T, B, ...] -> [B, U*T, ...] as the recorder must lay it out."""
    u, t, b = x.shape[:3]
    return np.moveaxis(x.reshape(u * t, b, *x.shape[3:]), 1, 0)


def _check_vault_equals(path: str, traj: dict[str, np.ndarray], extras: bool) -> None:
    with Vault.open(path) as v:
        data = v.read()
        eps = v.episodes
        meta = v.metadata["marlvault"]
    n = traj["action"].shape[-1]
    np.testing.assert_array_equal(data["observations"], _fold(traj["obs"]))
    np.testing.assert_array_equal(data["actions"], _fold(traj["action"]))
    np.testing.assert_array_equal(data["rewards"], _fold(traj["reward"]))
    np.testing.assert_array_equal(data["infos"]["legals"], _fold(traj["legal"]).astype(np.float32))
    np.testing.assert_array_equal(data["infos"]["state"], _fold(traj["state"]))
    for key, name in (("terminals", "terminated"), ("truncations", "truncated")):
        want = np.repeat(_fold(traj[name]).astype(np.float32)[..., None], n, axis=-1)
        np.testing.assert_array_equal(data[key], want)
    if extras:
        np.testing.assert_array_equal(data["infos"]["log_prob"], _fold(traj["log_prob"]))
        u, t, b = traj["terminated"].shape
        upd = np.broadcast_to(traj["update"][:, None, None], (u, t, b))
        np.testing.assert_array_equal(data["infos"]["update"], _fold(upd))
    assert meta["env_name"] == "rware" and meta["scenario"] == "tiny-2ag"
    assert meta["config"]["system"]["rollout_length"] == int(traj["rollout_length"])
    assert "observations" in meta["schema"] and "jax" in meta["versions"]
    assert len(eps) > 0


def _check_rows_continuous(path: str, traj: dict[str, np.ndarray]) -> None:
    """Row b's next observation is env b's own true next observation, across update boundaries,
    and its in-episode step counter advances by one or restarts at 0 after an episode end."""
    with Vault.open(path) as v:
        obs = v.read(keys=["observations"])["observations"]
    final = _fold(traj["final_obs"])
    done = _fold(traj["terminated"] | traj["truncated"])
    steps = _fold(traj["step_count"])
    cont = ~done[:, :-1]
    np.testing.assert_array_equal(obs[:, 1:][cont], final[:, :-1][cont])
    expect = np.where(done[:, :-1], 0, steps[:, :-1] + 1)
    np.testing.assert_array_equal(steps[:, 1:], expect)


def _check_episodes_agree(path: str, traj: dict[str, np.ndarray]) -> None:
    """Per update, complete episodes in the vault's index match the learner's logged metrics."""
    t = int(traj["rollout_length"])
    with Vault.open(path) as v:
        eps = v.episodes
    done = eps[eps["complete"]]
    end_update = (done["start"] + done["length"] - 1) // t
    for u, (count, ret) in enumerate(zip(traj["episodes"], traj["episode_return"], strict=True)):
        mine = done[end_update == u]
        assert len(mine) == int(count), f"update {u}: vault {len(mine)} vs learner {count}"
        if count:
            np.testing.assert_allclose(mine["return"].mean(), ret, rtol=1e-5, atol=1e-6)


def test_record_one_device_exact(tmp_path):
    path = str(tmp_path / "one.vlt")
    traj = run(path, ["record.extras=log_prob,update", "system.total_timesteps=2048"])
    _check_vault_equals(path, traj, extras=True)
    _check_rows_continuous(path, traj)
    _check_episodes_agree(path, traj)


@pytest.mark.slow  # ~13 s; the default suite keeps 4 devices == 1 device for the learner
# (tests/online/test_ippo.py) and exact recording on one device (above); the slow
# tests/online/test_multiprocess.py compares 4-device vaults bit for bit too
def test_record_four_devices_exact(tmp_path, multi_device_env):
    path, npz = str(tmp_path / "four.vlt"), str(tmp_path / "traj.npz")
    subprocess.run(
        [sys.executable, "-m", "tests.record.record_worker", path, npz],
        cwd=ROOT, env=multi_device_env, check=True, timeout=600,
    )  # fmt: skip
    traj = dict(np.load(npz))
    assert int(traj["num_devices"]) == 4
    with Vault.open(path) as v:
        assert v.num_rows == 8  # rows = all envs over all devices
    _check_vault_equals(path, traj, extras=False)
    _check_rows_continuous(path, traj)


@pytest.mark.parametrize("every_k", [2])
def test_every_k_marks_gaps_truncated(tmp_path, every_k):
    path = str(tmp_path / "k.vlt")
    traj = run(path, [f"record.every_k_updates={every_k}", "record.extras=update,next_obs",
                      "system.total_timesteps=2048"])  # fmt: skip
    t = int(traj["rollout_length"])
    with Vault.open(path) as v:
        data = v.read()
    recorded = sorted(set(data["infos"]["update"][0, ::t].tolist()))
    assert recorded == list(range(0, len(traj["update"]), every_k))
    trunc = data["truncations"][:, :, 0]
    term = data["terminals"][:, :, 0]
    ends = np.arange(t - 1, data["actions"].shape[1] - 1, t)  # last step before each gap
    assert np.all((trunc[:, ends] == 1) | (term[:, ends] == 1))
    # the true next observation is kept where the recording cut the episode
    nxt = data["infos"]["next_obs"]
    cut = trunc == 1
    assert np.any(np.abs(nxt[cut]).sum(axis=(-1, -2)) > 0)
    assert np.all(nxt[~cut] == 0)


def test_resume_appends_a_restarted_run_after_cutting_open_episodes(tmp_path):
    path = str(tmp_path / "r.vlt")
    first = run(path, ["arch.seed=1"])
    with pytest.raises(VaultExistsError, match="found one"):
        run(path, [])
    second = run(path, ["record.resume=true", "arch.seed=2"])
    with Vault.open(path) as v:
        data, eps = v.read(), v.episodes
    n = _fold(first["obs"]).shape[1]
    both = np.concatenate([_fold(first["obs"]), _fold(second["obs"])], axis=1)
    np.testing.assert_array_equal(data["observations"], both)
    ended = (data["terminals"][:, n - 1, 0] == 1) | (data["truncations"][:, n - 1, 0] == 1)
    assert ended.all()  # the first run's open episodes end where the second run starts
    assert not ((eps["start"] < n) & (eps["start"] + eps["length"] > n)).any()
    first_open = ~(_fold(first["terminated"])[:, -1] | _fold(first["truncated"])[:, -1])
    assert first_open.any()  # there was something to cut
