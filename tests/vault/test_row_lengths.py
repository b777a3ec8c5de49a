"""``Vault.row_lengths``: validation, clipping, and an episode index that stops at each row's end."""

from __future__ import annotations

import os

import numpy as np
import pytest

from marlvault.errors import SchemaMismatchError
from marlvault.vault.check import verify
from marlvault.vault.vault import Vault

from .helpers import make_batch

STEPS = 40
LENGTHS = [40, 23, 0]


def _expected(batch: dict, lengths: list[int]) -> list[tuple]:
    """Episodes by a plain loop over each row's valid steps: (row, start, length, complete)."""
    done = (batch["terminals"].max(-1) > 0) | (batch["truncations"].max(-1) > 0)
    rew = batch["rewards"].astype(np.float64).mean(-1)
    out = []
    for b, stop in enumerate(lengths):
        start = 0
        for t in range(stop):
            if done[b, t]:
                out.append((b, start, t + 1 - start, True, rew[b, start : t + 1].sum()))
                start = t + 1
        if start < stop:
            out.append((b, start, stop - start, False, rew[b, start:stop].sum()))
    return out


def test_episodes_stop_at_row_length(tmp_path):
    batch = make_batch(3, STEPS, seed=4, p_end=0.15)  # padding holds real-looking data and ends
    path = str(tmp_path / "v")
    with Vault.create(path, batch, metadata={"marlvault": {"row_lengths": LENGTHS}}, chunks=8) as v:
        v.append(batch)
    with Vault.open(path) as v:
        assert v.row_lengths.dtype == np.int64 and v.row_lengths.tolist() == LENGTHS
        assert v.has_padding
        index = v.episodes
    want = _expected(batch, LENGTHS)
    got = [(int(e["row"]), int(e["start"]), int(e["length"]), bool(e["complete"]),
            float(e["return"])) for e in index]
    assert [g[:4] for g in got] == [w[:4] for w in want]
    np.testing.assert_allclose([g[4] for g in got], [w[4] for w in want], rtol=1e-9)
    cut = index[~index["complete"]]
    assert not cut["terminated"].any() and not cut["truncated"].any()
    assert (index["row"] != 2).all()  # a row of length 0 has no episode
    assert verify(path).ok, verify(path).problems


def test_default_and_clipping(tmp_path):
    batch = make_batch(3, 10, seed=1)
    plain = str(tmp_path / "plain")
    with Vault.create(plain, batch) as v:
        v.append(batch)
        assert v.row_lengths.tolist() == [10, 10, 10] and not v.has_padding
    clipped = str(tmp_path / "clipped")
    with Vault.create(clipped, batch, metadata={"marlvault": {"row_lengths": [100, 5, 5]}}) as v:
        assert v.row_lengths.tolist() == [0, 0, 0]  # nothing written yet
        v.append(batch)
    with Vault.open(clipped) as v:
        assert v.row_lengths.tolist() == [10, 5, 5]
        assert v.metadata["marlvault"]["row_lengths"] == [100, 5, 5]
    report = verify(clipped)
    assert not report.ok and "row 0: 100" in report.problems[0]


@pytest.mark.parametrize("bad", [[4, 4], [-1, 2, 3], [1.5, 2, 3], [True, 2, 3], "abc", [None] * 3])
def test_invalid_row_lengths_are_rejected_on_create(tmp_path, bad):
    path = str(tmp_path / "v")
    with pytest.raises(SchemaMismatchError, match="row_lengths expected a list of 3 integers"):
        Vault.create(path, make_batch(3, 2, seed=0), metadata={"marlvault": {"row_lengths": bad}})
    assert not os.path.exists(path)


def test_numpy_lengths_are_stored_as_json_ints(tmp_path):
    path = str(tmp_path / "v")
    lengths = np.array([3, 1], np.int64)
    with Vault.create(path, make_batch(2, 3, seed=0),
                      metadata={"marlvault": {"row_lengths": list(lengths)}}) as v:
        v.append(make_batch(2, 3, seed=0))
    with Vault.open(path) as v:
        assert v.metadata["marlvault"]["row_lengths"] == [3, 1]
        assert v.row_lengths.tolist() == [3, 1]
