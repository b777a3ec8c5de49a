"""The flashbax-style ``Vault`` runs flashbax-Vault code unchanged (Mava's store-experience loop)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlvault.vault import Vault as NativeVault
from marlvault.vault.compat import Vault as CompatVault

fbx = pytest.importorskip("flashbax")
from flashbax.vault import Vault as FbxVault  # noqa: E402

B, BUF, ADD = 2, 12, 4


def _buffer():
    buf = fbx.make_trajectory_buffer(
        add_batch_size=B,
        max_length_time_axis=BUF,
        min_length_time_axis=1,
        sample_batch_size=1,
        sample_sequence_length=1,
        period=1,
    )
    item = {
        "obs": jnp.zeros((3,), jnp.float32),
        "rewards": jnp.zeros((), jnp.float32),
        "terminals": jnp.zeros((), jnp.bool_),
    }
    return buf, buf.init(item)


def _add(buf, state, step: int):
    t = jnp.arange(step * ADD, (step + 1) * ADD, dtype=jnp.float32)
    batch = {
        "obs": jnp.broadcast_to(
            t[None, :, None] + jnp.arange(B)[:, None, None] * 1000, (B, ADD, 3)
        ),
        "rewards": jnp.broadcast_to(t[None] * 0.5, (B, ADD)),
        "terminals": jnp.broadcast_to((t[None] % 5) == 4, (B, ADD)),
    }
    return buf.add(state, batch)


@pytest.mark.parametrize("vault_cls", [FbxVault, CompatVault], ids=["flashbax", "marlvault"])
def test_mava_store_experience_loop(tmp_path, vault_cls, monkeypatch):
    """Identical code for both classes: write every 2 adds (buffer wraps), then read back."""
    monkeypatch.chdir(tmp_path)
    buf, state = _buffer()
    vault = vault_cls(vault_name="rware", experience_structure=state.experience, vault_uid="run")
    written = 0
    for step in range(10):
        state = _add(buf, state, step)
        if step % 2 == 1:
            written += vault.write(state)
    assert written == 40 and vault.vault_index == 40
    got = vault.read().experience
    assert got["obs"].shape == (B, 40, 3)
    np.testing.assert_array_equal(
        np.asarray(got["obs"][:, :, 0]), np.arange(40)[None] + np.arange(B)[:, None] * 1000
    )
    last = vault.read(timesteps=8).experience
    np.testing.assert_array_equal(np.asarray(last["rewards"][0]), np.arange(32, 40) * 0.5)
    half = vault.read(percentiles=(25, 50)).experience
    assert half["terminals"].shape == (B, 10) and half["terminals"].dtype == jnp.bool_
    if vault_cls is CompatVault:
        vault.close()
        theirs = FbxVault(
            vault_name="rware", vault_uid="run"
        )  # flashbax reads what the drop-in wrote
        assert theirs.vault_index == 40
        for key in got:
            np.testing.assert_array_equal(
                np.asarray(theirs.read().experience[key]), np.asarray(got[key])
            )


def test_first_write_of_a_wrapped_full_buffer(tmp_path, monkeypatch):
    """flashbax writes nothing here (current_index wrapped to 0); the drop-in writes all of it."""
    monkeypatch.chdir(tmp_path)
    buf, state = _buffer()
    for step in range(3):  # 12 steps: full, current_index back to 0
        state = _add(buf, state, step)
    assert int(state.current_index) == 0 and bool(state.is_full)
    theirs = FbxVault(vault_name="a", experience_structure=state.experience, vault_uid="x")
    assert theirs.write(state) == 0
    ours = CompatVault(vault_name="b", experience_structure=state.experience, vault_uid="x")
    assert ours.write(state) == BUF
    for step in range(3, 5):  # the wrap-around position moved: oldest first on a later full write
        state = _add(buf, state, step)
    assert ours.write(state) == 2 * ADD
    ours.close()
    data = NativeVault.open(str(tmp_path / "vaults" / "b" / "x")).read()
    np.testing.assert_array_equal(data["rewards"][0], np.arange(20) * 0.5)


def test_compat_read_structure_namedtuple(tmp_path, monkeypatch):
    from typing import NamedTuple

    class Exp(NamedTuple):
        obs: jax.Array
        act: jax.Array

    monkeypatch.chdir(tmp_path)
    exp = Exp(jnp.ones((2, 5, 3)), jnp.zeros((2, 5), jnp.int32))
    state = type("S", (), {"experience": exp, "current_index": 5, "is_full": False})()
    v = CompatVault("nt", experience_structure=exp, vault_uid="u")
    assert v.write(state) == 5
    v.close()
    back = CompatVault("nt", experience_structure=exp, vault_uid="u").read().experience
    assert isinstance(back, Exp) and back.obs.shape == (2, 5, 3) and back.act.dtype == jnp.int32
