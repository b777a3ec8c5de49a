"""A drop-in for ``flashbax.vault.Vault`` (0.1.3 signatures) on top of marlvault's engine.

Code written for flashbax's Vault (e.g. Mava's "store experience" example) runs by changing only
its import::

    from marlvault.vault.compat import Vault
    v = Vault(vault_name="rware", experience_structure=buffer_state.experience, vault_uid="Good")
    v.write(buffer_state)          # new data since the last write
    state = v.read(percentiles=(0, 50))

Differences, all in the user's favour: the first write of a *full* buffer writes the whole buffer
in time order (flashbax writes nothing when the index wrapped to 0), no prints, errors are
:class:`marlvault.errors.VaultError` subclasses, and the vault is only locked for writing once
``write`` is called (readers are never blocked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.errors import InvalidLocationError, VaultError, VaultRangeError
from marlvault.tree import flatten, unflatten
from marlvault.vault.vault import Vault as NativeVault


@dataclass(frozen=True)
class TrajectoryBufferState:
    """Stand-in for flashbax's state when flashbax is not installed (same field names)."""

    experience: Any
    current_index: Any
    is_full: Any


def _state_class() -> Any:
    try:
        from flashbax.buffers.trajectory_buffer import TrajectoryBufferState as FbxState
    except ImportError:
        return TrajectoryBufferState
    return FbxState


def _check_component(name: str, value: str, rel_dir: str) -> None:
    """Refuse a ``vault_name``/``vault_uid`` that would leave ``rel_dir`` (flashbax does not check).

    Raises:
        InvalidLocationError: empty, absolute, or with a ``..`` component.
    """
    text = os.fspath(value)
    parts = text.replace("\\", "/").split("/")
    if text and not os.path.isabs(text) and ".." not in parts and "://" not in text:
        return
    raise InvalidLocationError(
        f"{rel_dir}: {name} expected a relative name inside rel_dir (no '..', not absolute, not "
        f"empty), found {text!r}; fix: pass a plain name such as 'Good', and choose the "
        "directory with rel_dir"
    )


class Vault:
    """flashbax-style vault at ``<cwd>/<rel_dir>/<vault_name>/<vault_uid>``."""

    def __init__(
        self,
        vault_name: str,
        experience_structure: Any = None,
        rel_dir: str = "vaults",
        vault_uid: str | None = None,
        compression: dict | None = None,
        metadata: dict | None = None,
    ) -> None:
        uid = vault_uid or datetime.now().strftime("%Y%m%d%H%M%S")
        _check_component("vault_name", vault_name, rel_dir)
        _check_component("vault_uid", uid, rel_dir)
        self._path = os.path.normpath(os.path.join(os.getcwd(), rel_dir, vault_name, uid))
        self._structure = experience_structure
        self._last_received = 0
        self._written_any = False
        if os.path.exists(os.path.join(self._path, "metadata.json")):
            self._vault = NativeVault.open(self._path, mode="r")
        elif experience_structure is not None:
            self._vault = NativeVault.create(
                self._path, experience_structure, metadata=metadata, compression=compression
            )
        else:
            raise VaultError(
                f"{self._path}: expected an existing vault or an experience_structure to create "
                "one, found neither; fix: pass experience_structure=buffer_state.experience"
            )

    @property
    def vault_index(self) -> int:
        """Committed time steps."""
        return self._vault.num_steps

    @property
    def native(self) -> NativeVault:
        """The underlying :class:`marlvault.vault.Vault`."""
        return self._vault

    def _writer(self) -> NativeVault:
        if self._vault.mode != "a":
            self._vault = NativeVault.open(self._path, mode="a")
        return self._vault

    def _intervals(self, state: Any, source_interval: tuple[int, int]) -> list[tuple[int, int]]:
        current = int(state.current_index)
        buffer_len = jax.tree_util.tree_leaves(state.experience)[0].shape[1]
        if tuple(source_interval) == (0, 0):
            if not self._written_any and bool(np.asarray(getattr(state, "is_full", False))):
                # A full buffer on the first write: everything, oldest first.
                return [(current, buffer_len), (0, current)] if current else [(0, buffer_len)]
            source_interval = (self._last_received, current)
        lo, hi = int(source_interval[0]), int(source_interval[1])
        if hi >= lo:
            return [(lo, hi)]
        return [(lo, buffer_len), (0, hi)]

    def write(
        self,
        fbx_state: Any,
        source_interval: tuple[int, int] = (0, 0),
        dest_start: int | None = None,
    ) -> int:
        """Append new data of a ``TrajectoryBufferState``-like object (``experience``,
        ``current_index``, ``is_full``); returns the time steps written."""
        vault = self._writer()
        if dest_start is not None and dest_start != vault.num_steps:
            raise VaultError(
                f"{self._path}: dest_start expected {vault.num_steps} (append only), found "
                f"{dest_start}; fix: leave dest_start=None"
            )
        written = 0
        for lo, hi in self._intervals(fbx_state, source_interval):
            if hi > lo:
                vault.append(
                    jax.tree.map(lambda x, a=lo, b=hi: np.asarray(x[:, a:b]), fbx_state.experience)
                )
                written += hi - lo
        if written:
            vault.flush()
        self._last_received = int(fbx_state.current_index)
        self._written_any = self._written_any or written > 0
        return written

    def read(self, timesteps: int | None = None, percentiles: tuple[int, int] | None = None) -> Any:
        """Read everything, the last ``timesteps`` steps, or a percentile range, as a
        ``TrajectoryBufferState`` with ``current_index=0`` and ``is_full=True``."""
        vault = self._vault
        if vault.mode == "r":
            vault.refresh()
        end = vault.num_steps
        if timesteps is not None:
            lo, hi = end - int(timesteps), end
        elif percentiles is not None:
            if not percentiles[0] < percentiles[1]:
                raise VaultRangeError(
                    f"{self._path}: percentiles expected ascending (lo < hi), found {percentiles}"
                )
            lo, hi = int(end * percentiles[0] / 100), int(end * percentiles[1] / 100)
        else:
            lo, hi = 0, end
        flat = vault.read_flat(lo, hi)
        return _state_class()(
            experience=self._restructure(flat),
            current_index=jnp.array(0, dtype=int),
            is_full=jnp.array(True, dtype=bool),
        )

    def _restructure(self, flat: dict[str, np.ndarray]) -> Any:
        if self._structure is None:
            return jax.tree.map(jnp.asarray, unflatten(flat))
        names = list(flatten(self._structure))
        treedef = jax.tree_util.tree_structure(self._structure)
        return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(flat[n]) for n in names])

    def close(self) -> None:
        """Release the writer lock (flashbax has no close; marlvault releases it at exit too)."""
        self._vault.close()

    def __del__(self) -> None:
        # Every write() is already flushed; only the writer lock is left to release.
        vault = getattr(self, "_vault", None)
        if vault is not None:
            vault.release()
