"""Hand-made vault contents with known episodes, shared by the offline tests."""

from __future__ import annotations

import numpy as np

B, T, N, O, A, S = 2, 10, 2, 3, 4, 5


def handmade_tree(with_next_obs: bool = False, with_state: bool = True) -> dict:
    """Two rows of ten steps; ``obs[b, t, n, 0] = 100 b + t + 0.1 n`` identifies every step.

    Row 0: steps 0-3 terminate at 3; steps 4-7 are truncated at 7; steps 8-9 are unfinished.
    Row 1: steps 0-5 terminate at 5; steps 6-9 are unfinished.
    """
    code = 100.0 * np.arange(B)[:, None] + np.arange(T)[None, :]  # [B, T]
    obs = np.zeros((B, T, N, O), np.float32)
    obs[..., 0] = code[:, :, None] + 0.1 * np.arange(N)
    terminals = np.zeros((B, T, N), np.float32)
    truncations = np.zeros((B, T, N), np.float32)
    terminals[0, 3] = terminals[1, 5] = 1.0
    truncations[0, 7] = 1.0
    legals = np.ones((B, T, N, A), np.float32)
    legals[..., 3] = 0.0
    tree = {
        "observations": obs,
        "actions": (np.arange(B * T * N).reshape(B, T, N) % 3).astype(np.int32),
        "rewards": np.broadcast_to(code[:, :, None], (B, T, N)).astype(np.float32).copy(),
        "terminals": terminals,
        "truncations": truncations,
        "infos": {"legals": legals},
    }
    if with_state:
        tree["infos"]["state"] = np.repeat(code[:, :, None], S, axis=2).astype(np.float32)
    if with_next_obs:
        next_obs = np.zeros_like(obs)
        next_obs[0, 7, :, 0] = 999.0  # the real observation after the truncation
        tree["infos"]["next_obs"] = next_obs
    return tree
