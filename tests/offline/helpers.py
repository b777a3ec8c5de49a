"""Hand-made vault contents with known episodes, shared by the offline tests."""

from __future__ import annotations

import numpy as np

B, T, N, O, A, S = 2, 10, 2, 3, 4, 5  # noqa: E741


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


def synthetic_tree(rows: int = 4, steps: int = 48, seed: int = 0) -> dict:
    """A learnable dataset: the recorded action of each agent is the arg-max of its first A
    observation entries; reward 1 when it is 0 mod 2; episodes of 5-12 steps; last action
    illegal everywhere. Truncation every other episode."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, steps, N, O + A)).astype(np.float32)
    legals = np.ones((rows, steps, N, A), np.float32)
    legals[..., A - 1] = 0.0
    actions = np.argmax(obs[..., : A - 1], axis=-1).astype(np.int32)
    rewards = (actions % 2 == 0).astype(np.float32)
    terminals = np.zeros((rows, steps, N), np.float32)
    truncations = np.zeros((rows, steps, N), np.float32)
    for b in range(rows):
        t, k = 0, 0
        while True:
            t += int(rng.integers(5, 13))
            if t > steps:
                break
            (terminals if k % 2 else truncations)[b, t - 1] = 1.0
            k += 1
    state = obs.reshape(rows, steps, -1).copy()
    return {
        "observations": obs,
        "actions": actions,
        "rewards": rewards,
        "terminals": terminals,
        "truncations": truncations,
        "infos": {"legals": legals, "state": state},
    }
