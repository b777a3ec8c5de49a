"""Shared test data for the vault tests (tiny, recorded-like)."""

from __future__ import annotations

import numpy as np

N_AGENTS, OBS, ACTS, STATE = 2, 5, 4, 3


def make_batch(rows: int, steps: int, seed: int, *, p_end: float = 0.1) -> dict:
    """An OG-MARL layout batch: every leaf (B, T, ...), nested ``infos``."""
    rng = np.random.default_rng(seed)
    ends = rng.random((rows, steps)) < p_end
    trunc = ends & (rng.random((rows, steps)) < 0.3)
    term = ends & ~trunc
    per_agent = (rows, steps, N_AGENTS)
    return {
        "observations": rng.integers(0, 5, (*per_agent, OBS)).astype(np.float32),
        "actions": rng.integers(0, ACTS, per_agent).astype(np.int32),
        "rewards": rng.normal(size=per_agent).astype(np.float32),
        "terminals": np.repeat(term[..., None], N_AGENTS, -1).astype(np.float32),
        "truncations": np.repeat(trunc[..., None], N_AGENTS, -1).astype(np.float32),
        "infos": {
            "legals": (rng.random((*per_agent, ACTS)) < 0.8).astype(np.float32),
            "state": rng.normal(size=(rows, steps, STATE)).astype(np.float32),
        },
    }


def concat(batches: list[dict]) -> dict:
    """Concatenate nested-dict batches along time."""
    first = batches[0]
    if isinstance(first, dict):
        return {k: concat([b[k] for b in batches]) for k in first}
    return np.concatenate(batches, axis=1)


def assert_tree_equal(got: dict, want: dict) -> None:
    """Same keys, shapes, dtypes and bits."""
    assert isinstance(got, dict) and set(got) == set(want), (sorted(got), sorted(want))
    for key in want:
        if isinstance(want[key], dict):
            assert_tree_equal(got[key], want[key])
        else:
            g, w = np.asarray(got[key]), np.asarray(want[key])
            assert g.shape == w.shape and g.dtype == w.dtype, (
                key,
                g.shape,
                g.dtype,
                w.shape,
                w.dtype,
            )
            np.testing.assert_array_equal(g, w, err_msg=key)


def brute_episodes(data: dict) -> list[tuple]:
    """Reference episode list (row, start, length, return, terminated, truncated, complete)."""
    rew = data["rewards"].astype(np.float64).mean(-1)
    term = (data["terminals"] != 0).any(-1)
    trunc = (data["truncations"] != 0).any(-1)
    out = []
    for b in range(rew.shape[0]):
        start = 0
        for t in range(rew.shape[1]):
            if term[b, t] or trunc[b, t]:
                out.append(
                    (
                        b,
                        start,
                        t + 1 - start,
                        rew[b, start : t + 1].sum(),
                        bool(term[b, t]),
                        bool(trunc[b, t] and not term[b, t]),
                        True,
                    )
                )
                start = t + 1
        if start < rew.shape[1]:
            out.append((b, start, rew.shape[1] - start, rew[b, start:].sum(), False, False, False))
    return out


def assert_episodes(index: np.ndarray, data: dict) -> None:
    want = brute_episodes(data)
    assert len(index) == len(want)
    for rec, ref in zip(index, want, strict=True):
        assert (int(rec["row"]), int(rec["start"]), int(rec["length"])) == ref[:3]
        np.testing.assert_allclose(rec["return"], ref[3], rtol=1e-9, atol=1e-9)
        assert (bool(rec["terminated"]), bool(rec["truncated"]), bool(rec["complete"])) == ref[4:]
