"""Interop both ways against flashbax 0.1.3 itself (B > 1, nested dicts, several appends, reopen)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from marlvault.vault import Vault
from marlvault.vault import format as fmt
from marlvault.vault.store import Store, parse_location

from .helpers import assert_episodes, assert_tree_equal, concat, make_batch

fbx_vault = pytest.importorskip("flashbax.vault.vault")
from flashbax.buffers.trajectory_buffer import TrajectoryBufferState  # noqa: E402

B = 3


def _fbx_write(path: str, batches: list[dict], buffer_len: int = 16) -> None:
    """Write batches with flashbax the way Mava does: a buffer state per write."""
    parent, uid = os.path.split(path)
    root, name = os.path.split(parent)
    template = jax.tree.map(
        lambda x: np.zeros((x.shape[0], buffer_len, *x.shape[2:]), x.dtype), batches[0]
    )
    vault = fbx_vault.Vault(name, experience_structure=template, rel_dir=root, vault_uid=uid)
    for batch in batches:
        t = jax.tree_util.tree_leaves(batch)[0].shape[1]
        exp = jax.tree.map(lambda buf, x, t=t: np.concatenate([x, buf[:, t:]], 1), template, batch)
        state = TrajectoryBufferState(
            experience=exp, current_index=np.int32(t), is_full=np.bool_(False)
        )
        vault._last_received_fbx_index = 0
        assert vault.write(state) == t


def test_flashbax_reads_ours_bit_exact(tmp_path):
    path = str(tmp_path / "vaults" / "rware" / "ours")
    batches = [make_batch(B, t, seed=i) for i, t in enumerate([5, 40, 1, 13])]
    with Vault.create(path, batches[0], chunks=8) as v:
        for b in batches[:2]:
            v.append(b)
    with Vault.open(path, mode="a") as v:  # reopen and continue
        for b in batches[2:]:
            v.append(b)
    want = concat(batches)
    fbx = fbx_vault.Vault("rware", rel_dir=str(tmp_path / "vaults"), vault_uid="ours")
    assert fbx.vault_index == 59
    got = jax.tree.map(np.asarray, fbx.read().experience)
    assert_tree_equal(got, want)
    # with a structure too, and a percentile read
    fbx2 = fbx_vault.Vault(
        "rware", experience_structure=batches[0], rel_dir=str(tmp_path / "vaults"), vault_uid="ours"
    )
    part = jax.tree.map(np.asarray, fbx2.read(percentiles=(0, 50)).experience)
    assert_tree_equal(part, jax.tree.map(lambda x: x[:, :29], want))


def test_ours_reads_flashbax_bit_exact(tmp_path):
    path = str(tmp_path / "vaults" / "lbf" / "theirs")
    batches = [make_batch(B, t, seed=10 + i) for i, t in enumerate([7, 16, 3])]
    _fbx_write(path, batches)
    want = concat(batches)
    v = Vault.open(path)  # opened without a structure: layout from metadata.json only
    assert v.num_rows == B and v.num_steps == 26
    assert sorted(v.keys) == sorted(
        [
            "actions",
            "infos.legals",
            "infos.state",
            "observations",
            "rewards",
            "terminals",
            "truncations",
        ]
    )
    assert_tree_equal(v.read(), want)
    assert_tree_equal(
        v.read(3, 9, rows=[0, 2], keys="infos"),
        {"infos": jax.tree.map(lambda x: x[[0, 2], 3:9], want["infos"])},
    )
    assert_episodes(v.episodes, want)  # computed from terminals/truncations, cached
    streamed = concat([c for _, c in v.iter_chunks(5)])
    assert_tree_equal(streamed, want)


def test_append_to_flashbax_vault_then_flashbax_reads(tmp_path):
    path = str(tmp_path / "vaults" / "lbf" / "mixed")
    first = [make_batch(B, 9, seed=1)]
    _fbx_write(path, first)
    more = make_batch(B, 30, seed=2)
    with Vault.open(path, mode="a") as v:
        assert v.num_steps == 9
        assert v.append(more) == 39
    want = concat(first + [more])
    fbx = fbx_vault.Vault("lbf", rel_dir=str(tmp_path / "vaults"), vault_uid="mixed")
    assert_tree_equal(jax.tree.map(np.asarray, fbx.read().experience), want)
    v = Vault.open(path)
    assert_episodes(v.episodes, want)
    cursor = Store(parse_location(path)).read_array(fmt.CURSOR_ARRAY)
    assert cursor[0, 1] == 39  # the index the writer stored with its commit covers all steps


def test_reading_episodes_never_writes(tmp_path):
    """A reader computes a flashbax vault's episode index in memory; storage stays untouched."""
    path = str(tmp_path / "vaults" / "lbf" / "fbx")
    want = make_batch(B, 12, seed=3)
    _fbx_write(path, [want])
    before = _tree_state(path)
    v = Vault.open(path)
    assert_episodes(v.episodes, want)
    assert len(v.episodes) > 0
    assert _tree_state(path) == before
    with Vault.open(path, mode="a") as writer:  # a writer that only reads episodes
        assert_episodes(writer.episodes, want)
        assert _tree_state(path) == before
    assert _tree_state(path) == before
    assert not Store(parse_location(path)).has_arrays([fmt.CURSOR_ARRAY])


def _tree_state(path):
    """``[(relative file, size)]`` of everything but the writer lock."""
    return sorted(
        (os.path.relpath(os.path.join(root, f), path), os.path.getsize(os.path.join(root, f)))
        for root, _, files in os.walk(path)
        for f in files
        if f != fmt.LOCK_FILE
    )


def test_og_marl_key_layout_bool_and_ints(tmp_path):
    """flashbax vault with terminals only (no truncations), bool and int leaves."""
    rng = np.random.default_rng(0)
    data = {
        "observations": rng.normal(size=(2, 12, 3, 4)).astype(np.float32),
        "actions": rng.integers(0, 3, (2, 12, 3)).astype(np.int32),
        "rewards": rng.normal(size=(2, 12, 3)).astype(np.float32),
        "terminals": (rng.random((2, 12, 3)) < 0.2),
        "infos": {"legals": rng.random((2, 12, 3, 3)) < 0.5},
    }
    path = str(tmp_path / "v" / "og" / "Good")
    _fbx_write(path, [data], buffer_len=12)
    v = Vault.open(path)
    assert_tree_equal(v.read(), data)
    idx = v.episodes
    ends = data["terminals"].any(-1)
    assert int(idx["complete"].sum()) == int(ends.sum())
    assert not idx["truncated"].any()


def test_flashbax_appends_inside_our_partial_chunk(tmp_path):
    """Our NaN-filled ``terminals`` (unwritten-step marker) does not stop flashbax appending
    mid-chunk, and the steps it writes pass our open-time check."""
    path = str(tmp_path / "vaults" / "lbf" / "ours")
    first = make_batch(B, 10, seed=1)
    with Vault.create(path, make_batch(B, 1, 0), chunks=4) as v:
        v.append(first)
    more = make_batch(B, 5, seed=2)
    _fbx_write(path, [more])
    with Vault.open(path) as v:
        assert v.num_steps == 15
        assert_tree_equal(v.read(), concat([first, more]))
