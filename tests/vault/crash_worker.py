"""Writer/reader processes for the crash and concurrency tests (deterministic stream)."""

from __future__ import annotations

import numpy as np

ROWS = 3


def stream(t0: int, t1: int) -> dict:
    """Steps [t0, t1) of a deterministic stream, every leaf (ROWS, t1 - t0, ...)."""
    t = np.arange(t0, t1)[None, :]
    b = np.arange(ROWS)[:, None]
    agents = np.ones((1, 1, 2))
    ends_t = ((t + b) % 9 == 8)[..., None] * agents
    ends_c = ((t + 2 * b) % 13 == 12)[..., None] * agents
    return {
        "observations": (
            (t * 8 + b)[..., None, None] + np.arange(3)[None, None, None, :] * agents[..., None]
        ).astype(np.float32),
        "actions": ((t * 3 + b) % 5)[..., None].repeat(2, -1).astype(np.int32),
        "rewards": (((t * 7 + b) % 11) / 4.0)[..., None].repeat(2, -1).astype(np.float32),
        "terminals": ends_t.astype(np.float32),
        "truncations": (ends_c * (1 - ends_t)).astype(np.float32),
    }


def writer(path: str, seed: int, stop_at: int, flush_prob: float = 0.3) -> None:
    """Append random-size batches of the stream until ``stop_at`` steps, then close."""
    from marlvault.vault import Vault

    rng = np.random.default_rng(seed)
    try:
        vault = Vault.open(path, mode="a")
    except FileNotFoundError:
        vault = Vault.create(path, stream(0, 1), chunks=8)
    with vault:
        while vault.num_steps < stop_at:
            n = min(int(rng.integers(1, 20)), stop_at - vault.num_steps)
            vault.append(stream(vault.num_steps, vault.num_steps + n))
            if rng.random() < flush_prob:
                vault.flush()
