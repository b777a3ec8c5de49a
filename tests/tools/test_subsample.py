"""Subsampling: output episodes are exactly input episodes, counts are met, seeds repeat."""

from __future__ import annotations

import numpy as np
import pytest

from marlvault.errors import ConfigError, DatasetError
from marlvault.tools.index import episode_table
from marlvault.tools.subsample import SubsampleSpec, pack_rows, subsample
from marlvault.vault import Vault

from .helpers import flat


def _source_of(step_code: float) -> tuple[int, int]:
    """(row, t) of a step from its identifying observation value 1000 b + t."""
    return int(round(step_code)) // 1000, int(round(step_code)) % 1000


def _check_exact_copies(src_tree, dst):
    """Every complete output episode equals, key by key, the source episode it came from.

    Returns the list of source (row, start) of the output episodes, in output order."""
    src = flat(src_tree)
    out_eps = []
    with Vault.open(dst) as v:
        data = v.read_flat()
        table = episode_table(v)
        src_table = episode_table_cache(src_tree)
        for r, s, n, c in zip(table.row, table.start, table.length, table.complete, strict=True):
            if not c:  # padding tail: all zeros, no flags
                assert all(np.all(x[r, s : s + n] == 0) for x in data.values())
                continue
            b, t = _source_of(float(data["observations"][r, s, 0, 0]))
            assert (b, t, n) in src_table, f"output episode at row {r} step {s} is no source episode"
            for key, x in data.items():
                np.testing.assert_array_equal(x[r, s : s + n], src[key][b, t : t + n], err_msg=key)
            out_eps.append((b, t))
    return out_eps


def episode_table_cache(tree):
    from .helpers import expected_episodes

    return {(e["row"], e["start"], e["length"]) for e in expected_episodes(tree) if e["complete"]}


@pytest.mark.parametrize("rows", [1, 2])
def test_episodes_count_exact_copies_and_seed(vault_path, tree, tmp_path, rows):
    spec = SubsampleSpec(episodes=5, seed=3, rows=rows)
    prov = subsample(vault_path, str(tmp_path / "a"), spec)
    eps_a = _check_exact_copies(tree, str(tmp_path / "a"))
    assert len(eps_a) == 5 == prov["episodes"] and len(set(eps_a)) == 5
    subsample(vault_path, str(tmp_path / "b"), spec)
    assert _check_exact_copies(tree, str(tmp_path / "b")) == eps_a  # same seed, same output
    subsample(vault_path, str(tmp_path / "c"), SubsampleSpec(episodes=5, seed=4, rows=rows))
    assert set(_check_exact_copies(tree, str(tmp_path / "c"))) != set(eps_a)
    with Vault.open(str(tmp_path / "a")) as v:
        meta = v.metadata["marlvault"]
        assert v.num_rows == rows
        assert meta["env"] == "handmade" and meta["config"] == {"seed": 7}
        p = meta["provenance"]
        assert p["tool"] == "subsample" and p["seed"] == 3 and p["method"] == ["episodes"]
        assert p["sources"] == [vault_path] and p["params"]["episodes"] == 5
        assert max(p["row_lengths"]) == v.num_steps and sum(p["row_lengths"]) == p["transitions"]


def test_transitions_met_with_whole_episodes(vault_path, tree, tmp_path):
    prov = subsample(vault_path, str(tmp_path / "t"), SubsampleSpec(transitions=30, seed=0))
    eps = _check_exact_copies(tree, str(tmp_path / "t"))
    lengths = {(r, s): n for r, s, n in episode_table_cache(tree)}
    got = sum(lengths[e] for e in eps)
    assert got == prov["transitions"] and 30 <= got < 30 + max(lengths.values())
    assert got - lengths[eps[-1]] < 30 or got - min(lengths[e] for e in eps) < 30


def test_return_range_and_update_range(vault_path, tree, tmp_path):
    table = episode_table(vault_path)
    done = table.select(table.complete)
    lo, hi = float(np.sort(done.ret)[3]), float(np.sort(done.ret)[9])
    subsample(vault_path, str(tmp_path / "r"), SubsampleSpec(return_range=(lo, hi)))
    eps = _check_exact_copies(tree, str(tmp_path / "r"))
    rets = {(int(r), int(s)): x for r, s, x in zip(done.row, done.start, done.ret, strict=True)}
    assert sorted(eps) == sorted(k for k, x in rets.items() if lo <= x <= hi)
    # update index = t // 5: episodes entirely inside steps [5, 14]
    subsample(vault_path, str(tmp_path / "u"), SubsampleSpec(update_range=(1, 2)))
    eps = _check_exact_copies(tree, str(tmp_path / "u"))
    want = sorted((r, s) for r, s, n in episode_table_cache(tree) if s >= 5 and s + n <= 15)
    assert sorted(eps) == want and want


def test_target_distribution(vault_path, tree, tmp_path):
    spec = SubsampleSpec(target_edges=(0.0, 2.0, 4.0, 7.0), target_counts=(2, 3, 1), seed=1)
    subsample(vault_path, str(tmp_path / "d"), spec)
    eps = _check_exact_copies(tree, str(tmp_path / "d"))
    table = episode_table(vault_path)
    ret = {(int(r), int(s)): x for r, s, x in zip(table.row, table.start, table.ret, strict=True)}
    got = np.histogram([ret[e] for e in eps], bins=[0.0, 2.0, 4.0, 7.0])[0]
    assert got.tolist() == [2, 3, 1]


def test_too_few_and_bad_specs(vault_path, tmp_path):
    with pytest.raises(DatasetError, match="asked for 13 episodes, found only 12"):
        subsample(vault_path, str(tmp_path / "x"), SubsampleSpec(episodes=13))
    with pytest.raises(DatasetError, match="bin 0"):
        subsample(vault_path, str(tmp_path / "y"),
                  SubsampleSpec(target_edges=(-10.0, -5.0), target_counts=(1,)))
    with pytest.raises(ConfigError, match="at most one"):
        SubsampleSpec(episodes=2, transitions=10)
    with pytest.raises(ConfigError, match="K\\+1"):
        SubsampleSpec(target_edges=(0.0, 1.0), target_counts=(1, 2))
    with pytest.raises(DatasetError, match="infos.update"):
        subsample(vault_path, str(tmp_path / "z"),
                  SubsampleSpec(update_range=(0, 1), update_key="infos.nope"))


def test_pack_rows_balances():
    row, start, lengths = pack_rows(np.array([5, 3, 4, 2, 6]), 2)
    assert row.tolist() == [0, 1, 1, 0, 0] and start.tolist() == [0, 0, 3, 5, 7]
    assert lengths.tolist() == [13, 7]


def test_small_chunks_stream_the_same(vault_path, tree, tmp_path, monkeypatch):
    """With tiny chunks every episode spans several chunks; output is unchanged."""
    import marlvault.tools._common as common

    spec = SubsampleSpec(episodes=7, seed=5, rows=3)
    subsample(vault_path, str(tmp_path / "big"), spec)
    monkeypatch.setattr(common, "DEFAULT_CHUNK_BYTES", 1)
    import marlvault.tools.writer as writer

    monkeypatch.setattr(writer, "DEFAULT_CHUNK_BYTES", 1)
    subsample(vault_path, str(tmp_path / "small"), spec)
    with Vault.open(str(tmp_path / "big")) as a, Vault.open(str(tmp_path / "small")) as b:
        fa, fb = a.read_flat(), b.read_flat()
        assert fa.keys() == fb.keys()
        for k in fa:
            np.testing.assert_array_equal(fa[k], fb[k])
    _check_exact_copies(tree, str(tmp_path / "small"))
