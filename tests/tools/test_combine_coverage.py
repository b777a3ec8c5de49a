"""combine reads back as both sources; coverage equals a direct count."""

from __future__ import annotations

import numpy as np
import pytest

from marlvault.errors import SchemaMismatchError
from marlvault.tools.combine import combine
from marlvault.tools.coverage import UniqueCounter, coverage
from marlvault.tools.index import episode_table
from marlvault.vault import Vault

from .helpers import flat, make_tree, write_vault


def test_combine_rows_reads_back_as_both(vault_path, tree, tmp_path):
    short = make_tree([[4, 6, 8], [3, "tail15"]], steps=18, seed=9)
    other = write_vault(str(tmp_path / "short"), short, appends=2)
    prov = combine(str(tmp_path / "both"), [vault_path, other], budget=1)
    with Vault.open(str(tmp_path / "both")) as v:
        assert (v.num_rows, v.num_steps) == (5, 25)
        got = v.read_flat()
        a, b = flat(tree), flat(short)
        for key in a:
            np.testing.assert_array_equal(got[key][:3], a[key], err_msg=key)
            np.testing.assert_array_equal(got[key][3:, :18], b[key], err_msg=key)
            assert np.all(got[key][3:, 18:] == 0)
        meta = v.metadata["marlvault"]
        assert meta["provenance"]["sources"][1] == {"path": other, "rows": [3, 5], "steps": 18}
        assert meta["env"] == "handmade"
    assert prov["axis"] == "rows"
    # episodes: all complete ones of both, unchanged
    src_a, src_b = episode_table(vault_path), episode_table(other)
    both = episode_table(str(tmp_path / "both"))
    n_complete = int(src_a.complete.sum() + src_b.complete.sum())
    assert int(both.complete.sum()) == n_complete
    assert sorted(both.ret[both.complete]) == sorted(
        np.concatenate([src_a.ret[src_a.complete], src_b.ret[src_b.complete]]))


def test_combine_mismatch_names_first_key(vault_path, tmp_path):
    bad = make_tree(seed=2)
    bad["infos"]["legals"] = bad["infos"]["legals"][..., :3].copy()
    other = write_vault(str(tmp_path / "bad"), bad)
    with pytest.raises(SchemaMismatchError, match="'infos.legals' expected per-step shape"):
        combine(str(tmp_path / "out"), [vault_path, other])
    missing = make_tree(seed=2)
    del missing["infos"]["state"]
    other2 = write_vault(str(tmp_path / "missing"), missing)
    with pytest.raises(SchemaMismatchError, match="expected key 'infos.state'"):
        combine(str(tmp_path / "out2"), [vault_path, other2])


def _direct(tree, decimals):
    obs = np.round(tree["observations"].astype(np.float64), decimals)
    act = tree["actions"]
    state = np.round(tree["infos"]["state"].astype(np.float64), decimals)
    b, t, n = act.shape
    joint = {(tuple(state[i, j]), tuple(act[i, j])) for i in range(b) for j in range(t)}
    agents = [{(tuple(obs[i, j, k]), int(act[i, j, k])) for i in range(b) for j in range(t)}
              for k in range(n)]
    return len(joint), [len(a) for a in agents], b * t


@pytest.mark.parametrize("decimals", [0, 2])
def test_coverage_matches_direct_count(tmp_path, decimals):
    tree = make_tree(seed=4)
    # make repeats likely: few distinct values
    tree["observations"][..., 0] = (tree["observations"][..., 0] % 3) + 0.25
    tree["actions"] = tree["actions"] % 2
    path = write_vault(str(tmp_path / "cov"), tree)
    joint, agents, total = _direct(tree, decimals)
    cov = coverage(path, decimals=decimals, budget=1)
    assert cov.transitions == total == 75
    assert cov.joint_unique == joint and cov.agent_unique == tuple(agents)
    assert cov.joint_coverage == joint / total
    assert cov.agent_coverage == pytest.approx(np.mean(agents) / total)
    assert cov.state_source == "infos.state"
    assert joint < total  # the test data does repeat


def test_unique_counter_merges(monkeypatch):
    import importlib

    cov = importlib.import_module("marlvault.tools.coverage")  # the module, not the function
    monkeypatch.setattr(cov, "_MERGE_AT", 3)
    c = UniqueCounter()
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        h = rng.integers(0, 50, size=7).astype(np.uint64)
        seen.update(h.tolist())
        c.add(h)
        assert c.pending_size < max(3, c.merged.size)  # merged once pending outgrows both
    assert c.count == len(seen)
