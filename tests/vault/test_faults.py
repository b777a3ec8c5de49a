"""Fault injection: every corruption of a vault gives a named one-line error (or correct data).

One tiny vault (B=2, 10 steps in chunks of 4: three chunks, the last partial) is made once per
module and copied for each case. Each case mutates one thing (a ``metadata.json`` field, the
``vault_index`` or episode arrays, the lock file, a data file) and then runs ``Vault.open`` +
``read`` + ``episodes``, ``describe`` (``vault info``), ``verify`` and both CLI commands, and
asserts for each either the expected :class:`MarlvaultError` subclass or the original data, all
within a few seconds (no scan proportional to a corrupt number).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.errors import (
    MarlvaultError,
    NotAVaultError,
    VaultCorruptError,
    VaultError,
    VaultLockedError,
    VaultNotFoundError,
    VaultVersionError,
)
from marlvault.vault import Vault
from marlvault.vault import format as fmt
from marlvault.vault.check import describe, verify
from marlvault.vault.store import Store, parse_location

from .helpers import assert_tree_equal, make_batch

ROWS, STEPS, CHUNK = 2, 10, 4
LIMIT_S = 5.0
BIG = 10**9


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A finished vault and the data it holds."""
    path = str(tmp_path_factory.mktemp("faults") / "template")
    data = make_batch(ROWS, STEPS, 3, p_end=0.3)
    with Vault.create(path, make_batch(ROWS, 1, 0), chunks=CHUNK) as v:
        v.append(data)
    return path, data


@pytest.fixture()
def vault(template, tmp_path):
    path = str(tmp_path / "v")
    shutil.copytree(template[0], path)
    return path


# --- mutations -------------------------------------------------------------------------------
def _meta(change: Callable[[dict], None]) -> Callable[[str], None]:
    def mutate(path: str) -> None:
        file = os.path.join(path, fmt.METADATA_FILE)
        doc = json.load(open(file))
        change(doc)
        with open(file, "w") as fh:
            json.dump(doc, fh)

    return mutate


def _set(keys: str, value) -> Callable[[str], None]:
    """Set (or with ``...`` delete) a dotted key of ``metadata.json``."""
    *parents, last = keys.split("/")

    def change(doc: dict) -> None:
        node = doc
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return _meta(change)


def _meta_bytes(raw: bytes) -> Callable[[str], None]:
    def mutate(path: str) -> None:
        with open(os.path.join(path, fmt.METADATA_FILE), "wb") as fh:
            fh.write(raw)

    return mutate


def _write_array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[str], None]:
    """Rewrite a whole small array inside the OCDBT database (the vault's own store)."""

    def mutate(path: str) -> None:
        store = Store(parse_location(path))
        store.open_arrays([name])
        if name == fmt.EPISODES_ARRAY:
            value = store.read_array(name, slice(0, 64))
        else:
            value = store.read_array(name)
        value = change(value.copy())
        store.atomic_write([(name, slice(0, len(value)), value)])

    return mutate


def _index(value: int) -> Callable[[str], None]:
    return _write_array(fmt.INDEX_ARRAY, lambda a: np.array([value], np.int32))


def _cursor(row: int, col: int, value: float) -> Callable[[str], None]:
    def change(a: np.ndarray) -> np.ndarray:
        a[row, col] = value
        return a

    return _write_array(fmt.CURSOR_ARRAY, change)


def _episode(col: int, value: float) -> Callable[[str], None]:
    def change(a: np.ndarray) -> np.ndarray:
        a[0, col] = value
        return a

    return _write_array(fmt.EPISODES_ARRAY, change)


def _delete_key(key: str) -> Callable[[str], None]:
    def mutate(path: str) -> None:
        import tensorstore as ts

        kv = ts.KvStore.open({"driver": "ocdbt", "base": parse_location(path).base}).result()
        kv.delete_range(ts.KvStore.KeyRange(key, key + "\0")).result()

    return mutate


def _put_key(key: str, value: bytes) -> Callable[[str], None]:
    def mutate(path: str) -> None:
        import tensorstore as ts

        kv = ts.KvStore.open({"driver": "ocdbt", "base": parse_location(path).base}).result()
        kv.write(key, value).result()

    return mutate


def _data_files(path: str) -> list[str]:
    folder = os.path.join(path, "d")
    files = [os.path.join(folder, f) for f in os.listdir(folder)]
    return sorted(files, key=os.path.getsize)


def _truncate_data(path: str) -> None:
    for file in _data_files(path):
        size = os.path.getsize(file)
        with open(file, "r+b") as fh:
            fh.truncate(size // 2)


def _garble_data(path: str) -> None:
    for file in _data_files(path):
        size = os.path.getsize(file)
        with open(file, "r+b") as fh:
            fh.seek(size // 3)
            fh.write(b"\xa5" * max(size // 3, 1))


def _delete_data(path: str) -> None:
    for file in _data_files(path):
        os.unlink(file)


def _manifest(raw: bytes | None) -> Callable[[str], None]:
    def mutate(path: str) -> None:
        file = os.path.join(path, "manifest.ocdbt")
        if raw is None:
            os.unlink(file)
        else:
            with open(file, "wb") as fh:
                fh.write(raw)

    return mutate


# --- the table -------------------------------------------------------------------------------
HARMLESS = None
CASES: dict[str, tuple[Callable[[str], None], type[MarlvaultError] | None]] = {
    # metadata.json as a whole
    "meta-empty": (_meta_bytes(b""), VaultCorruptError),
    "meta-binary": (_meta_bytes(b"\x00\xff\xfe garbage"), VaultCorruptError),
    "meta-list": (_meta_bytes(b"[1, 2]"), NotAVaultError),
    "meta-deep": (_meta_bytes(b"[" * 100_000 + b"]" * 100_000), VaultCorruptError),
    # version
    "version-missing": (_set("version", ...), NotAVaultError),
    "version-str": (_set("version", "1.2"), NotAVaultError),
    "version-bool": (_set("version", True), NotAVaultError),
    "version-nan": (_set("version", float("nan")), VaultCorruptError),
    "version-inf": (_set("version", float("inf")), VaultCorruptError),
    "version-negative": (_set("version", -1), VaultVersionError),
    "version-huge": (_set("version", 1e300), VaultVersionError),
    "version-1.0": (_set("version", 1.0), HARMLESS),
    # structure
    "shape-missing": (_set("structure_shape", ...), NotAVaultError),
    "shape-list": (_set("structure_shape", [1, 2]), VaultCorruptError),
    "shape-leaf-int": (_set("structure_shape/rewards", 5), VaultCorruptError),
    "shape-negative": (_set("structure_shape/rewards", "(2, 4, -2)"), VaultCorruptError),
    "shape-huge-B": (_set("structure_shape/rewards", f"({BIG}, 4, 2)"), VaultCorruptError),
    "shape-huge-dim": (_set("structure_shape/rewards", f"(2, 4, {10**40})"), VaultCorruptError),
    "shape-bool": (_set("structure_shape/rewards", "(True, 4, 2)"), VaultCorruptError),
    "shape-float": (_set("structure_shape/rewards", "(2.0, 4, 2)"), VaultCorruptError),
    "shape-nested": (_set("structure_shape/rewards", "(" * 5000 + ")" * 5000), VaultCorruptError),
    "shape-other-B": (_set("structure_shape/rewards", "(3, 4, 2)"), VaultCorruptError),
    "dtype-missing": (_set("structure_dtype", ...), VaultCorruptError),
    "dtype-list": (_set("structure_dtype/rewards", [1]), VaultCorruptError),
    "dtype-object": (_set("structure_dtype/rewards", "object"), VaultCorruptError),
    "dtype-wrong": (_set("structure_dtype/rewards", "float64"), VaultCorruptError),
    "dtype-nonsense": (_set("structure_dtype/rewards", "no-such-type"), VaultCorruptError),
    # our section
    "ours-not-dict": (_set("marlvault", "hello"), HARMLESS),
    "chunk-steps-missing": (_set("marlvault/chunk_steps", ...), HARMLESS),
    "chunk-steps-str": (_set("marlvault/chunk_steps", "abc"), VaultCorruptError),
    "chunk-steps-nan": (_set("marlvault/chunk_steps", float("nan")), VaultCorruptError),
    "chunk-steps-inf": (_set("marlvault/chunk_steps", float("inf")), VaultCorruptError),
    "chunk-steps-float": (_set("marlvault/chunk_steps", 2.5), VaultCorruptError),
    "chunk-steps-negative": (_set("marlvault/chunk_steps", -4), VaultCorruptError),
    "chunk-steps-zero": (_set("marlvault/chunk_steps", 0), VaultCorruptError),
    "chunk-steps-huge": (_set("marlvault/chunk_steps", 10**12), VaultCorruptError),
    "chunk-steps-list": (_set("marlvault/chunk_steps", [4]), VaultCorruptError),
    "chunk-steps-other": (_set("marlvault/chunk_steps", 8), VaultCorruptError),
    "row-lengths-str": (_set("marlvault/row_lengths", "abc"), VaultCorruptError),
    "row-lengths-nan": (_set("marlvault/row_lengths", [float("nan")] * ROWS), VaultCorruptError),
    "row-lengths-negative": (_set("marlvault/row_lengths", [-1] * ROWS), VaultCorruptError),
    "row-lengths-huge": (_set("marlvault/row_lengths", [10**30] * ROWS), VaultCorruptError),
    "row-lengths-short": (_set("marlvault/row_lengths", [1]), VaultCorruptError),
    "row-lengths-full": (_set("marlvault/row_lengths", [STEPS] * ROWS), HARMLESS),
    "creator-garbage": (_set("marlvault/creator", {"x": float("nan")}), HARMLESS),
    "compression-garbage": (_set("marlvault/compression", 5), HARMLESS),
    "user-key-nan": (_set("note", float("inf")), HARMLESS),
    # vault_index
    "index-billion": (_index(BIG), VaultCorruptError),
    "index-int32-max": (_index(2**31 - 1), VaultCorruptError),
    "index-next-chunk": (_index(3 * CHUNK + 1), VaultCorruptError),
    "index-inside-last-chunk": (_index(STEPS + 1), VaultCorruptError),
    "index-negative": (_index(-1), VaultCorruptError),
    "index-below-episodes": (_index(CHUNK), VaultCorruptError),
    "index-chunk-deleted": (_delete_key("vault_index/0"), VaultCorruptError),
    "index-zarray-garbage": (_put_key("vault_index/.zarray", b"garbage"), VaultCorruptError),
    "leaf-zarray-garbage": (_put_key("rewards./.zarray", b"{]"), VaultCorruptError),
    "leaf-chunk-deleted": (_delete_key("rewards./0.1.0"), VaultCorruptError),
    "leaf-last-chunk-deleted": (_delete_key("observations./0.2.0.0"), VaultCorruptError),
    # episode cursor and rows
    "cursor-episodes-billion": (_cursor(0, 0, BIG), VaultCorruptError),
    "cursor-episodes-nan": (_cursor(0, 0, float("nan")), VaultCorruptError),
    "cursor-episodes-negative": (_cursor(0, 0, -1), VaultCorruptError),
    "cursor-steps-billion": (_cursor(0, 1, BIG), VaultCorruptError),
    "cursor-steps-inf": (_cursor(0, 1, float("inf")), VaultCorruptError),
    "cursor-steps-negative": (_cursor(0, 1, -BIG), VaultCorruptError),
    "cursor-steps-fraction": (_cursor(0, 1, 2.5), VaultCorruptError),
    "cursor-start-nan": (_cursor(1, 0, float("nan")), VaultCorruptError),
    "cursor-start-beyond": (_cursor(1, 0, BIG), VaultCorruptError),
    "cursor-return-nan": (_cursor(1, 1, float("nan")), VaultCorruptError),
    "cursor-deleted": (_delete_key("__marlvault__/episode_cursor/0.0"), VaultCorruptError),
    "episode-row-range": (_episode(0, 99), VaultCorruptError),
    "episode-start-nan": (_episode(1, float("nan")), VaultCorruptError),
    "episode-length-zero": (_episode(2, 0), VaultCorruptError),
    "episode-length-huge": (_episode(2, BIG), VaultCorruptError),
    "episode-flag": (_episode(4, 7), VaultCorruptError),
    "episodes-deleted": (_delete_key("__marlvault__/episodes/0.0"), VaultCorruptError),
    # data files of the database
    "data-truncated": (_truncate_data, VaultCorruptError),
    "data-garbled": (_garble_data, VaultCorruptError),
    "data-deleted": (_delete_data, VaultCorruptError),
    "manifest-garbage": (_manifest(b"\x00garbage" * 10), VaultCorruptError),
    "manifest-empty": (_manifest(b""), VaultCorruptError),
    "manifest-deleted": (_manifest(None), NotAVaultError),
}


def _timed(call: Callable[[], object]) -> object:
    start = time.monotonic()
    try:
        return call()
    finally:
        assert time.monotonic() - start < LIMIT_S, f"took {time.monotonic() - start:.1f} s"


def _load(path: str):
    with Vault.open(path) as v:
        return v.read(), v.episodes


def _cli(*args: str):
    result = _timed(lambda: CliRunner().invoke(app, list(args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception)
    )
    return result


@pytest.mark.parametrize("name", list(CASES))
def test_fault(vault, template, name):
    mutate, error = CASES[name]
    mutate(vault)
    if error is None:
        data, episodes = _timed(lambda: _load(vault))
        assert_tree_equal(data, template[1])
        with Vault.open(template[0]) as v:
            want = v.episodes
        np.testing.assert_array_equal(episodes, want)
        assert _timed(lambda: verify(vault)).ok
        assert _timed(lambda: describe(vault))["steps"] == STEPS
        assert _cli("vault", "info", vault).exit_code == 0
        assert _cli("vault", "verify", vault).exit_code == 0
        return
    with pytest.raises(error) as info:
        _timed(lambda: _load(vault))
    _assert_message(info.value, vault)
    with pytest.raises(error):
        _timed(lambda: describe(vault))
    report = _timed(lambda: verify(vault))
    assert not report.ok and any(error.__name__ in p for p in report.problems), report.problems
    result = _cli("vault", "info", vault)
    assert result.exit_code == error.exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    result = _cli("vault", "verify", vault)
    assert result.exit_code == VaultCorruptError.exit_code, result.output
    assert error.__name__ in result.output and "Traceback" not in result.output


def _assert_message(err: BaseException, path: str) -> None:
    text = str(err)
    assert "\n" not in text, text
    for word in (path, "expected", "found", "fix"):
        assert word in text, (word, text)


def test_index_error_names_the_last_step_found(vault):
    _index(BIG)(vault)
    with pytest.raises(VaultCorruptError) as info:
        _timed(lambda: Vault.open(vault))
    text = str(info.value)
    assert "vault_index" in text and str(BIG) in text and f"{3 * CHUNK}" in text, text


def test_index_inside_the_last_chunk_names_the_last_written_step(vault, template):
    """Chunks are stored whole, so this needs the NaN fill of ``terminals``, not a listing."""
    _index(STEPS + 2)(vault)
    with pytest.raises(VaultCorruptError) as info:
        _timed(lambda: Vault.open(vault))
    text = str(info.value)
    assert f"says {STEPS + 2} steps" in text and f"last step found is {STEPS - 1}" in text, text
    _index(STEPS)(vault)  # the fix the message gives
    assert_tree_equal(_load(vault)[0], template[1])


def test_verify_reports_a_missing_middle_chunk(vault):
    """open checks the last chunk only; verify lists every chunk and finds the gap."""
    _delete_key("rewards./0.1.0")(vault)
    report = verify(vault)
    assert not report.ok and any("rewards" in p for p in report.problems), report.problems


# --- the writer lock ---------------------------------------------------------------------------
LOCKS: dict[str, tuple[bytes | None, type[MarlvaultError] | None]] = {
    "lock-garbage": (b"\x00\xff garbage", None),  # unparseable: a writer died mid-write
    "lock-empty": (b"", None),
    "lock-pid-huge": (json.dumps({"pid": 10**30, "host": "h", "time": 0}).encode(), VaultLockedError),
    "lock-pid-huge-here": (b'{"pid": 1000000000000000000000000000000, "host": "%s", "time": 0}', VaultLockedError),
    "lock-pid-negative-here": (b'{"pid": -1, "host": "%s", "time": 0}', VaultLockedError),
    "lock-pid-str": (json.dumps({"pid": "x", "host": "h", "time": 0}).encode(), VaultLockedError),
    "lock-time-str": (json.dumps({"pid": 1, "host": "h", "time": "noon"}).encode(), VaultLockedError),
    "lock-time-huge": (json.dumps({"pid": 1, "host": "h", "time": 1e300}).encode(), VaultLockedError),
    "lock-time-nan": (b'{"pid": 1, "host": "h", "time": NaN}', VaultLockedError),
    "lock-host-list": (json.dumps({"pid": 1, "host": [1], "time": 0}).encode(), VaultLockedError),
    "lock-list": (b"[1, 2, 3]", None),
    "lock-directory": (None, VaultLockedError),
}


@pytest.mark.parametrize("name", list(LOCKS))
def test_lock_fault(vault, template, name):
    import socket

    raw, error = LOCKS[name]
    lock = os.path.join(vault, fmt.LOCK_FILE)
    if raw is None:
        os.mkdir(lock)
    else:
        with open(lock, "wb") as fh:
            fh.write(raw.replace(b"%s", socket.gethostname().encode()))
    data, _ = _timed(lambda: _load(vault))  # readers never look at the lock
    assert_tree_equal(data, template[1])
    if error is None:
        with _timed(lambda: Vault.open(vault, "a")) as v:
            v.append(make_batch(ROWS, 1, 9))
        assert Vault.open(vault).num_steps == STEPS + 1
        return
    with pytest.raises(error) as info:
        _timed(lambda: Vault.open(vault, "a"))
    _assert_message(info.value, vault)
    assert fmt.LOCK_FILE in str(info.value)


# --- creating and naming ------------------------------------------------------------------------
def test_create_under_a_file(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(VaultError) as info:
        Vault.create(str(file / "v"), make_batch(1, 1, 0))
    _assert_message(info.value, str(file / "v"))


def test_create_name_too_long(tmp_path):
    path = str(tmp_path / ("n" * 250))
    with pytest.raises(VaultError) as info:
        Vault.create(path, make_batch(1, 1, 0))
    _assert_message(info.value, path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["/proc/marlvault-test-v", "/sys/marlvault-test-v"])
def test_create_on_pseudo_file_systems(where):
    if not os.path.isdir(os.path.dirname(where)):
        pytest.skip("no such file system here")
    with pytest.raises(VaultError) as info:
        Vault.create(where, make_batch(1, 1, 0))
    _assert_message(info.value, where)


def test_failed_create_removes_its_staging_folder(tmp_path):
    path = str(tmp_path / "v")
    with pytest.raises(VaultError):
        Vault.create(path, make_batch(1, 1, 0), compression={"id": "no-such-codec"})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("chunks", [10**9, 2**40])
def test_create_bounds_the_chunk_size(tmp_path, chunks):
    path = str(tmp_path / "v")
    with pytest.raises(VaultError) as info:
        _timed(lambda: Vault.create(path, make_batch(2, 1, 0), chunks=chunks))
    _assert_message(info.value, path)
    assert os.listdir(tmp_path) == []


def test_invalid_path_characters(tmp_path):
    path = str(tmp_path / "a\0b")
    with pytest.raises(VaultError):
        Vault.open(path)
    with pytest.raises(VaultError):
        Vault.create(path, make_batch(1, 1, 0))


def test_info_on_a_regular_file(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("hello")
    with pytest.raises(NotAVaultError) as info:
        Vault.open(str(file))
    assert "is a file" in str(info.value)
    _assert_message(info.value, str(file))
    result = _cli("vault", "info", str(file))
    assert result.exit_code == NotAVaultError.exit_code and "is a file" in result.output


def test_info_on_an_empty_path(tmp_path, monkeypatch):
    monkeypatch.chdir(_tiny(tmp_path / "here"))  # "" must not open the current directory
    with pytest.raises(VaultNotFoundError) as info:
        Vault.open("")
    assert "empty" in str(info.value)
    result = _cli("vault", "info", "")
    assert result.exit_code == VaultNotFoundError.exit_code and "empty" in result.output
    with pytest.raises(VaultNotFoundError):
        Vault.create("", make_batch(1, 1, 0))


def _tiny(path) -> str:
    with Vault.create(str(path), make_batch(1, 1, 0)) as v:
        v.append(make_batch(1, 2, 0))
    return str(path)
