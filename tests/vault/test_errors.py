"""Every bad-input case raises its own error; messages name path, expected, found, fix."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import numpy as np
import pytest

from marlvault.errors import (
    MarlvaultError,
    NotAVaultError,
    SchemaMismatchError,
    StorageFullError,
    VaultCorruptError,
    VaultExistsError,
    VaultLockedError,
    VaultNotFoundError,
    VaultRangeError,
    VaultReadOnlyError,
    VaultVersionError,
)
from marlvault.vault import Vault

from .helpers import assert_tree_equal, make_batch


def _msg_ok(err: BaseException, path: str) -> None:
    text = str(err)
    assert isinstance(err, MarlvaultError)
    assert path in text and "expected" in text and "found" in text and "fix" in text, text


@pytest.fixture()
def vault_path(tmp_path):
    path = str(tmp_path / "v")
    with Vault.create(path, make_batch(2, 1, 0), chunks=4) as v:
        v.append(make_batch(2, 6, 1))
    return path


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.pop("rewards"), id="missing-leaf"),
        pytest.param(lambda b: b.__setitem__("extra", b["rewards"]), id="extra-leaf"),
        pytest.param(lambda b: b.__setitem__("rewards", b["rewards"][..., :1]), id="shape"),
        pytest.param(lambda b: b.__setitem__("actions", b["actions"][:, :, None]), id="rank"),
        pytest.param(
            lambda b: b.__setitem__("rewards", b["rewards"].astype(np.float64)), id="dtype"
        ),
        pytest.param(lambda b: b.__setitem__("rewards", b["rewards"][:, :2]), id="time-mismatch"),
    ],
)
def test_append_schema_mismatch(vault_path, mutate):
    batch = make_batch(2, 3, 5)
    mutate(batch)
    with Vault.open(vault_path, "a") as v:
        with pytest.raises(SchemaMismatchError) as info:
            v.append(batch)
        v.append(make_batch(2, 1, 9))  # still usable: nothing was written
    _msg_ok(info.value, vault_path)
    assert Vault.open(vault_path).num_steps == 7


def test_append_wrong_rows(vault_path):
    with Vault.open(vault_path, "a") as v, pytest.raises(SchemaMismatchError) as info:
        v.append(make_batch(3, 2, 0))
    _msg_ok(info.value, vault_path)


def test_not_found_and_not_a_vault(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(VaultNotFoundError) as info:
        Vault.open(missing)
    assert isinstance(info.value, FileNotFoundError)
    _msg_ok(info.value, missing)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(NotAVaultError) as info:
        Vault.open(str(junk))
    _msg_ok(info.value, str(junk))
    (junk / "metadata.json").write_text(json.dumps({"name": "not a vault"}))
    with pytest.raises(NotAVaultError):
        Vault.open(str(junk))
    with pytest.raises(NotAVaultError):  # create refuses a non-empty non-vault dir
        Vault.create(str(junk / ".."), make_batch(1, 1, 0))


def test_truncated_metadata(vault_path):
    meta = os.path.join(vault_path, "metadata.json")
    data = open(meta, "rb").read()
    open(meta, "wb").write(data[: len(data) // 2])
    with pytest.raises(VaultCorruptError) as info:
        Vault.open(vault_path)
    _msg_ok(info.value, vault_path)


def test_newer_major_version(vault_path):
    meta = os.path.join(vault_path, "metadata.json")
    doc = json.load(open(meta))
    doc["version"] = 2.0
    json.dump(doc, open(meta, "w"))
    with pytest.raises(VaultVersionError) as info:
        Vault.open(vault_path)
    assert "2.0" in str(info.value)
    _msg_ok(info.value, vault_path)


def test_exists_locked_readonly(vault_path):
    with pytest.raises(VaultExistsError) as info:
        Vault.create(vault_path, make_batch(2, 1, 0))
    _msg_ok(info.value, vault_path)
    writer = Vault.open(vault_path, "a")
    with pytest.raises(VaultLockedError) as info:
        Vault.open(vault_path, "a")
    assert str(os.getpid()) in str(info.value) and vault_path in str(info.value)
    reader = Vault.open(vault_path)  # readers are never blocked
    with pytest.raises(VaultReadOnlyError) as info:
        reader.append(make_batch(2, 1, 0))
    _msg_ok(info.value, vault_path)
    with Vault.open(vault_path, "a", break_lock=True) as v:  # explicit takeover
        v.append(make_batch(2, 1, 0))
    writer._lock.released = True  # its lock was broken
    assert Vault.open(vault_path).num_steps == 7


def test_read_out_of_range(vault_path):
    v = Vault.open(vault_path)
    for kwargs in (
        {"start": 0, "stop": 8},
        {"start": 5, "stop": 3},
        {"start": -1},
        {"rows": [2]},
        {"keys": "nope"},
    ):
        with pytest.raises(VaultRangeError) as info:
            v.read(**kwargs)
        assert vault_path in str(info.value) and "expected" in str(info.value)


def _fill_disk(path: str, queue) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    v = Vault.open(path, "a")
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    big = make_batch(2, 64, 3)
    big["observations"] = np.random.default_rng(0).normal(size=(2, 64, 2, 5000)).astype(np.float32)
    try:
        v.append(big)
        v.flush()  # the last block commits in the background; its error surfaces here at latest
        queue.put("no error")
    except StorageFullError as err:
        queue.put(f"StorageFullError: {err}")
    except BaseException as err:  # reported to the test
        queue.put(f"{type(err).__name__}: {err}")


def test_disk_full_keeps_committed_data(tmp_path):
    path = str(tmp_path / "full")
    first = make_batch(2, 8, 1)
    first["observations"] = np.zeros((2, 8, 2, 5000), np.float32)
    with Vault.create(path, first, chunks=16) as v:
        v.append(first)
    ctx = mp.get_context("forkserver")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fill_disk, args=(path, queue))
    proc.start()
    result = queue.get(timeout=120)
    proc.join(60)
    assert result.startswith("StorageFullError") and path in result, result
    v = Vault.open(path, "a", break_lock=True)
    assert v.num_steps == 8
    assert_tree_equal(v.read(), first)
    v.append(make_batch(2, 1, 2) | {"observations": np.ones((2, 1, 2, 5000), np.float32)})
    v.close()
    assert Vault.open(path).num_steps == 9
