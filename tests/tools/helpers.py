"""Hand-made vaults with known episodes for the dataset-tool tests.

``make_tree`` builds the OG-MARL schema from a per-row list of episode lengths; every step is
identified by ``observations[b, t, n, 0] = 1000 b + t + 0.1 n`` so an episode copied anywhere can
be traced back to its source. Rewards are multiples of 1/4 so float sums are exact.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

N, O, A, S = 2, 3, 4, 5  # noqa: E741

# Row b: episode lengths; the last entry of a row may be an incomplete tail (marked None end).
LAYOUT = [
    [5, 7, 4, 6, 3],  # 25 steps, all complete
    [8, 8, 6, "tail3"],  # 22 complete + 3 incomplete = 25
    [2, 3, 9, 4, "tail7"],  # 18 + 7 = 25
]
T = 25


def make_tree(layout: list[list] = LAYOUT, steps: int = T, seed: int = 0) -> dict[str, Any]:
    """The experience pytree ``[B, T, ...]`` of ``layout`` with known episodes."""
    rng = np.random.default_rng(seed)
    rows = len(layout)
    obs = np.zeros((rows, steps, N, O), np.float32)
    code = 1000.0 * np.arange(rows)[:, None] + np.arange(steps)[None, :]
    obs[..., 0] = code[:, :, None] + 0.1 * np.arange(N)
    obs[..., 1:] = rng.integers(0, 3, size=(rows, steps, N, O - 1))
    terminals = np.zeros((rows, steps, N), np.float32)
    truncations = np.zeros((rows, steps, N), np.float32)
    for b, lengths in enumerate(layout):
        t = 0
        for k, n in enumerate(lengths):
            if isinstance(n, str):
                t += int(n[4:])
                continue
            t += n
            flags = truncations if k % 3 == 1 else terminals  # mix both kinds
            flags[b, t - 1, :] = 1.0
        assert t == steps, f"layout row {b} covers {t} steps, expected {steps}"
    legals = np.ones((rows, steps, N, A), np.float32)
    legals[..., 3] = (code[:, :, None] % 2).astype(np.float32)
    return {
        "observations": obs,
        "actions": rng.integers(0, A, size=(rows, steps, N)).astype(np.int32),
        "rewards": (rng.integers(-4, 9, size=(rows, steps, N)) / 4.0).astype(np.float32),
        "terminals": terminals,
        "truncations": truncations,
        "infos": {
            "legals": legals,
            "state": rng.integers(0, 2, size=(rows, steps, S)).astype(np.float32),
            "update": np.broadcast_to(np.arange(steps) // 5, (rows, steps)).astype(np.int32),
        },
    }


def expected_episodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Direct loop over steps: every episode as ``{row, start, length, ret, complete}``."""
    rew = tree["rewards"].astype(np.float64)
    done = (tree["terminals"].max(-1) > 0) | (tree["truncations"].max(-1) > 0)
    out = []
    for b in range(rew.shape[0]):
        start, ret = 0, 0.0
        for t in range(rew.shape[1]):
            ret += float(np.mean(rew[b, t]))
            if done[b, t]:
                out.append({"row": b, "start": start, "length": t + 1 - start, "ret": ret,
                            "complete": True})
                start, ret = t + 1, 0.0
        if start < rew.shape[1]:
            out.append({"row": b, "start": start, "length": rew.shape[1] - start, "ret": ret,
                        "complete": False})
    return out


def flat(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """``{dotted key: array}`` of a nested dict."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: np.asarray(tree)}


def write_vault(
    path: str, tree: dict[str, Any], metadata: dict | None = None, appends: int = 2, chunks: int = 4
):
    """Write ``tree`` with our engine in ``appends`` pieces, ``chunks`` steps per stored chunk
    (small, so that streaming crosses many chunk boundaries); returns the path."""
    from marlvault.vault.vault import Vault

    steps = tree["rewards"].shape[1]
    cuts = np.linspace(0, steps, appends + 1).astype(int)
    with Vault.create(path, tree, metadata=metadata, chunks=chunks) as v:
        for a, z in zip(cuts[:-1], cuts[1:], strict=False):
            v.append(_slice(tree, a, z))
        v.flush()
    return path


def _slice(tree: Any, a: int, z: int) -> Any:
    if isinstance(tree, dict):
        return {k: _slice(v, a, z) for k, v in tree.items()}
    return np.ascontiguousarray(tree[:, a:z])


def write_flashbax_vault(base: str, tree: dict[str, Any], name: str = "fbx", uid: str = "Good"):
    """Write ``tree`` with flashbax 0.1.3's own ``Vault`` (OG-MARL layout); returns its path."""
    import jax.numpy as jnp
    from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
    from flashbax.vault import Vault as FbxVault

    experience = _map(tree, jnp.asarray)
    steps = tree["rewards"].shape[1]
    vault = FbxVault(vault_name=name, experience_structure=experience, rel_dir=base, vault_uid=uid,
                     metadata={"env": "handmade", "scenario": "fbx-test"})
    state = TrajectoryBufferState(experience=experience, current_index=jnp.int32(steps - 1),
                                  is_full=jnp.bool_(False))
    vault.write(state, source_interval=(0, steps))
    return os.path.join(base, name, uid)


def _map(tree: Any, fn: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    return fn(tree)
