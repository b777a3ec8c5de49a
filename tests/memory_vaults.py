"""Recorded-like vaults and fresh-process runs for the slow memory tests (tools and offline
streaming): peak memory is only comparable between fresh processes."""

from __future__ import annotations

import subprocess
import sys

MAKE = """
import sys, numpy as np
from marlvault.vault import Vault
path, steps = sys.argv[1], int(sys.argv[2])
B, N, O, A, S = 32, 4, 66, 5, 132
rng = np.random.default_rng(0)
def block(t0, n):
    obs = (rng.random((B, n, N, O)) < 0.1).astype(np.float32)
    term = np.zeros((B, n, N), np.float32)
    tt = np.arange(t0, t0 + n)
    term[((tt[None, :] + 7 * np.arange(B)[:, None]) % 100) == 99] = 1
    return {"observations": obs, "actions": rng.integers(0, A, (B, n, N)).astype(np.int32),
            "rewards": (rng.random((B, n, N)) < 0.05).astype(np.float32), "terminals": term,
            "truncations": np.zeros((B, n, N), np.float32),
            "infos": {"legals": np.ones((B, n, N, A), np.float32),
                      "state": obs.reshape(B, n, -1)[..., :S].copy()}}
with Vault.create(path, block(0, 1)) as v:
    for t0 in range(0, steps, 1000):
        v.append(block(t0, min(1000, steps - t0)))
"""
"""Script ``python -c MAKE PATH STEPS``: a vault of B=32 rows, 4 agents, obs 66 float32, state
132, ``STEPS`` steps (2,000 steps: about 110 MB decoded)."""


def run_python(code: str, *args: str) -> str:
    """Runs ``code`` in a fresh interpreter with ``args``; the last line it printed."""
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True)
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
