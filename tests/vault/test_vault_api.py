"""Native API: appends of every size, reopen, reads, streaming, episodes, refresh."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from marlvault.vault import EPISODE_DTYPE, Vault

from .helpers import assert_episodes, assert_tree_equal, concat, make_batch


@pytest.mark.parametrize("sizes", [[1] * 10, [3, 17, 8, 1, 40], [64], [7, 0, 9]])
def test_appends_round_trip(tmp_path, sizes):
    path = str(tmp_path / "v")
    batches = [make_batch(3, t, seed=i) for i, t in enumerate(sizes)]
    with Vault.create(path, jax.eval_shape(lambda: batches[0]), chunks=8) as v:
        total = 0
        for b in batches:
            total += jax.tree_util.tree_leaves(b)[0].shape[1]
            assert v.append(b) == total
        assert v.num_steps == total
        # full chunks are issued; the last block may still be committing in the background
        assert v.committed_steps <= Vault.open(path).num_steps <= total // 8 * 8
        v.flush()
        assert v.committed_steps == total
    v = Vault.open(path)
    want = concat(batches)
    assert v.num_steps == total and v.num_rows == 3
    assert_tree_equal(v.read(), want)
    assert_episodes(v.episodes, want)
    assert v.episodes.dtype == EPISODE_DTYPE


def test_structure_metadata_reads(tmp_path):
    path = str(tmp_path / "v")
    data = make_batch(4, 37, seed=3)
    with Vault.create(
        path, data, chunks=16, compression="gzip", metadata={"run": 7, "marlvault": {"env": "lbf"}}
    ) as v:
        v.append(data)
    v = Vault.open(path)
    assert v.structure["infos"]["legals"] == jax.ShapeDtypeStruct((2, 4), np.float32)
    assert v.flat_structure["actions"].dtype == np.int32
    meta = v.metadata
    assert meta["version"] == 1.2 and meta["run"] == 7
    assert meta["marlvault"]["env"] == "lbf" and meta["marlvault"]["chunk_steps"] == 16
    assert meta["structure_shape"]["infos"]["state"] == "(4, 16, 3)"
    assert v.compression["id"] == "gzip"
    got = v.read(5, 30, rows=slice(1, 3), keys=["observations", "infos.state"])
    assert set(got) == {"observations", "infos"} and set(got["infos"]) == {"state"}
    np.testing.assert_array_equal(got["observations"], data["observations"][1:3, 5:30])
    np.testing.assert_array_equal(v.read(rows=2, keys="actions")["actions"], data["actions"][[2]])
    for rows in ([3, 2], [1, 2, 3], [0, 2, 3]):  # descending, a run (read as a slice), gaps
        np.testing.assert_array_equal(v.read(rows=rows, keys="actions")["actions"],
                                      data["actions"][rows])
    assert isinstance(v.read()["rewards"], np.ndarray)
    chunks = list(v.iter_chunks(10, rows=[0, 3], keys="rewards"))
    assert [s for s, _ in chunks] == [0, 10, 20, 30]
    np.testing.assert_array_equal(
        np.concatenate([c["rewards"] for _, c in chunks], 1), data["rewards"][[0, 3]]
    )


def test_full_chunks_commit_before_flush(tmp_path):
    """A full chunk is written without flush; at most one block waits in flight."""
    path = str(tmp_path / "v")
    batches = [make_batch(2, 8, seed=i) for i in range(3)]
    with Vault.create(path, batches[0], chunks=8) as v:
        v.append(batches[0])  # block [0, 8) in flight
        v.append(batches[1])  # waits for [0, 8), then [8, 16) in flight
        assert v.committed_steps == 8
        reader = Vault.open(path)  # [8, 16) may have landed meanwhile
        assert reader.num_steps in (8, 16)
        assert_tree_equal(reader.read(0, 8), batches[0])
        v.append(batches[2])
        assert v.committed_steps == 16 and reader.refresh() in (16, 24)
        v.append(make_batch(2, 3, seed=9))  # a partial chunk stays buffered
        assert v.committed_steps == 16 and v.num_steps == 27
        v.flush()
        assert v.committed_steps == 27 and reader.refresh() == 27


def test_default_chunking_and_codec(tmp_path):
    data = make_batch(32, 2, seed=0)
    data["observations"] = np.zeros((32, 2, 4, 66), np.float32)
    with Vault.create(str(tmp_path / "v"), data) as v:
        assert v.compression["id"] == "blosc"
        assert 8 <= v.chunk_steps <= 4096
        assert v.chunk_steps * 32 * 4 * 66 * 4 <= 4 << 20


def test_writer_reads_its_own_buffered_steps_and_reader_refresh(tmp_path):
    path = str(tmp_path / "v")
    first, second = make_batch(2, 5, 1), make_batch(2, 4, 2)
    writer = Vault.create(path, first, chunks=16)
    writer.append(first)
    reader = Vault.open(path)
    assert reader.num_steps == 0
    assert_tree_equal(writer.read(), first)  # flushes the partial chunk
    assert reader.refresh() == 5
    writer.append(second)
    writer.flush()
    assert reader.refresh() == 9
    assert_tree_equal(reader.read(), concat([first, second]))
    assert_episodes(reader.episodes, concat([first, second]))
    writer.close()
    writer.close()  # idempotent


def test_exist_ok_and_namedtuple_structure(tmp_path):
    from typing import NamedTuple

    class Exp(NamedTuple):
        obs: np.ndarray
        rewards: np.ndarray
        terminals: np.ndarray

    exp = Exp(
        np.ones((2, 3, 4), np.float32), np.ones((2, 3), np.float32), np.zeros((2, 3), np.bool_)
    )
    path = str(tmp_path / "nt")
    with Vault.create(path, exp) as v:
        v.append(exp)
    with Vault.create(path, exp, exist_ok=True) as v:
        v.append(exp)
    v = Vault.open(path)
    assert v.num_steps == 6 and set(v.keys) == {"obs", "rewards", "terminals"}
    idx = v.episodes
    assert len(idx) == 2 and not idx["complete"].any() and np.allclose(idx["return"], 6.0)


def test_locations(monkeypatch):
    from marlvault.vault.store import parse_location

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    s3 = parse_location("s3://bucket/a/b/")
    assert s3.kind == "s3" and s3.display == "s3://bucket/a/b"
    assert s3.base["bucket"] == "bucket" and s3.base["path"] == "a/b/"
    assert s3.base["endpoint"] == "http://127.0.0.1:9" and "id" not in repr(s3)
    gs = parse_location("gs://bkt/x")
    assert gs.base == {"driver": "gcs", "bucket": "bkt", "path": "x/"}
    local = parse_location("file:///tmp/v")
    assert local.kind == "file" and local.local_path == "/tmp/v"
