"""``combine`` and ``subsample`` with ``layout="og-marl"``: one row, complete episodes end to
end, no padding, readable by flashbax 0.1.3 the way OG-MARL reads a vault."""

from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.errors import ConfigError
from marlvault.tools.combine import combine
from marlvault.tools.index import episode_table
from marlvault.tools.subsample import SubsampleSpec, subsample
from marlvault.vault import Vault

from .helpers import make_tree, write_vault


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """A 2x18 vault: complete episodes 4, 6, 8 and 3, then a 15-step tail."""
    tree = make_tree([[4, 6, 8], [3, "tail15"]], steps=18, seed=9)
    return write_vault(str(tmp_path_factory.mktemp("og-short") / "short"), tree, appends=2)


def _expected(path: str, keep=None) -> list[tuple]:
    """``(data, row, start, length, return, terminated, truncated)`` of the complete episodes of
    the vault at ``path`` (or of the table indices ``keep``), in episode-table order."""
    table = episode_table(path)
    idx = np.flatnonzero(table.complete) if keep is None else np.sort(keep)
    with Vault.open(path) as v:
        data = v.read_flat()
    return [(data, int(table.row[e]), int(table.start[e]), int(table.length[e]),
             float(table.ret[e]), bool(table.terminated[e]), bool(table.truncated[e]))
            for e in idx]


def _check_one_row(dst: str, expected: list[tuple]) -> dict:
    """The vault at ``dst`` holds exactly ``expected``, in that order, in one unpadded row;
    returns its ``metadata["marlvault"]``."""
    total = sum(e[3] for e in expected)
    with Vault.open(dst) as v:
        assert v.num_rows == 1 and v.num_steps == total
        np.testing.assert_array_equal(v.row_lengths, [total])
        assert not v.has_padding
        data, meta = v.read_flat(), v.metadata["marlvault"]
    out = episode_table(dst)
    assert out.complete.all() and out.num == len(expected)
    got = sorted(zip(out.length.tolist(), out.ret.tolist(), out.terminated.tolist(),
                     out.truncated.tolist(), strict=True))
    want = sorted((e[3], e[4], e[5], e[6]) for e in expected)
    assert got == want  # as multisets
    np.testing.assert_array_equal(out.start, np.cumsum([0] + [e[3] for e in expected])[:-1])
    for i, (src, b, a, n, ret, term, trunc) in enumerate(expected):  # and in this order
        o = int(out.start[i])
        assert (out.length[i], out.ret[i], out.terminated[i], out.truncated[i]) == (
            n, ret, term, trunc)
        for key, x in data.items():
            np.testing.assert_array_equal(x[0, o : o + n], src[key][b, a : a + n], err_msg=key)
    assert (out.terminated | out.truncated).all() and out.terminated.any() and out.truncated.any()
    assert "row_lengths" not in meta
    return meta


def _check_flashbax(base: str, name: str, uid: str, dst: str, episodes: int) -> None:
    from flashbax.vault import Vault as FbxVault

    exp = FbxVault(vault_name=name, rel_dir=base, vault_uid=uid).read().experience
    with Vault.open(dst) as v:
        ours, steps = v.read(), int(v.num_steps)
    assert exp["rewards"].shape[:2] == (1, steps)
    for key in ("observations", "actions", "rewards", "terminals", "truncations"):
        np.testing.assert_array_equal(np.asarray(exp[key]), ours[key], err_msg=key)
    legals = np.asarray(exp["infos"]["legals"])
    np.testing.assert_array_equal(legals, ours["infos"]["legals"])
    assert (legals[..., :3] == 1).all()  # a zero-padded step would be all-illegal
    ends = (np.asarray(exp["terminals"]).max(-1) + np.asarray(exp["truncations"]).max(-1)) > 0
    assert ends[0, -1] and int(ends.sum()) == episodes


def test_combine_og_marl_is_every_complete_episode_in_one_row(vault_path, short, tmp_path):
    base = str(tmp_path)
    dst = os.path.join(base, "comb.vlt", "Good")
    prov = combine(dst, [vault_path, short], layout="og-marl", budget=1)
    expected = _expected(vault_path) + _expected(short)  # sources in the order given
    meta = _check_one_row(dst, expected)
    assert meta["env"] == "handmade" and meta["provenance"]["episodes"] == prov["episodes"]
    assert prov["layout"] == "og-marl" and prov["episodes"] == len(expected) == 16
    assert prov["transitions"] == 65 + 21 and prov["dropped_incomplete"] == 3
    assert prov["dropped_steps"] == 3 + 7 + 15
    assert prov["terminated"] + prov["truncated"] == 16
    assert [s["episodes"] for s in prov["sources"]] == [12, 4]
    assert [s["steps"] for s in prov["sources"]] == [[0, 65], [65, 86]]
    _check_flashbax(base, "comb.vlt", "Good", dst, 16)


def test_combine_og_marl_keeps_the_source_order_and_checks_structure(vault_path, short, tmp_path):
    dst = str(tmp_path / "rev")
    combine(dst, [short, vault_path], layout="og-marl")
    _check_one_row(dst, _expected(short) + _expected(vault_path))
    bad = make_tree(seed=2)
    del bad["infos"]["state"]
    other = write_vault(str(tmp_path / "bad"), bad)
    from marlvault.errors import SchemaMismatchError

    with pytest.raises(SchemaMismatchError, match="expected key 'infos.state'"):
        combine(str(tmp_path / "out"), [vault_path, other], layout="og-marl")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec", [SubsampleSpec(episodes=5, seed=3),
                                  SubsampleSpec(return_range=(-1.0, 100.0))])
def test_subsample_og_marl_is_the_chosen_episodes_in_one_row(vault_path, tmp_path, spec):
    base = str(tmp_path)
    dst = os.path.join(base, "sub.vlt", "Good")
    prov = subsample(vault_path, dst, spec, layout="og-marl")
    rows = str(tmp_path / "rows")
    subsample(vault_path, rows, spec)  # the default layout chooses the same episodes
    with Vault.open(rows) as v:
        by_code = {}
        data = v.read_flat()
    table, src = episode_table(rows), episode_table(vault_path)
    for s, n in zip(table.start, table.length, strict=True):
        code = int(round(float(data["observations"][0, s, 0, 0])))
        by_code[(code // 1000, code % 1000, int(n))] = True
    keep = [e for e in np.flatnonzero(src.complete)
            if (int(src.row[e]), int(src.start[e]), int(src.length[e])) in by_code]
    assert len(keep) == prov["episodes"]
    meta = _check_one_row(dst, _expected(vault_path, np.array(keep)))
    assert meta["provenance"]["layout"] == "og-marl"
    assert meta["provenance"]["episodes"] == prov["episodes"]
    assert prov["terminated"] + prov["truncated"] == prov["episodes"]
    _check_flashbax(base, "sub.vlt", "Good", dst, prov["episodes"])


def test_unknown_layout_and_rows_conflict(vault_path, tmp_path):
    with pytest.raises(ConfigError, match="expected one of rows, og-marl, found 'flat'; fix"):
        combine(str(tmp_path / "a"), [vault_path, vault_path], layout="flat")
    with pytest.raises(ConfigError, match="expected one of rows, og-marl, found 'flat'; fix"):
        subsample(vault_path, str(tmp_path / "b"), SubsampleSpec(), layout="flat")
    with pytest.raises(ConfigError, match="expected --rows 1 .* found --rows 2; fix"):
        subsample(vault_path, str(tmp_path / "c"), SubsampleSpec(rows=2), layout="og-marl")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_default_layout_is_unchanged(vault_path, short, tmp_path):
    prov = combine(str(tmp_path / "rows"), [vault_path, short])
    with Vault.open(str(tmp_path / "rows")) as v:
        assert (v.num_rows, v.num_steps) == (5, 25) and v.has_padding
    assert prov["layout"] == "rows" and prov["axis"] == "rows"
    prov = subsample(vault_path, str(tmp_path / "sub"), SubsampleSpec(episodes=4, rows=2))
    assert prov["layout"] == "packed episodes, rows=2"
    with Vault.open(str(tmp_path / "sub")) as v:
        assert v.num_rows == 2 and "row_lengths" in v.metadata["marlvault"]


def test_cli_layout_og_marl(vault_path, short, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["vault", "combine", str(tmp_path / "c"), vault_path, short,
                              "--layout", "og-marl"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "wrote 16 complete episodes, 86 transitions" in res.output
    assert "dropped 3 incomplete episodes (25 steps)" in res.output
    res = runner.invoke(app, ["vault", "subsample", vault_path, str(tmp_path / "s"),
                              "--episodes", "4", "--layout", "og-marl"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "wrote 4 episodes" in res.output and "og-marl layout" in res.output
    for name in ("c", "s"):
        with Vault.open(str(tmp_path / name)) as v:
            assert v.num_rows == 1 and not v.has_padding
            assert v.metadata["marlvault"]["provenance"]["layout"] == "og-marl"
    res = runner.invoke(app, ["vault", "combine", str(tmp_path / "x"), vault_path, short,
                              "--layout", "flat"])
    assert res.exit_code == ConfigError.exit_code and "og-marl" in res.output
    for cmd in ("combine", "subsample"):
        res = runner.invoke(app, ["vault", cmd, "--help"], env={"COLUMNS": "200"})
        assert "--layout" in res.output and "og-marl" in res.output


def test_combine_og_marl_skips_a_padded_source_s_padding(vault_path, short, tmp_path):
    padded = str(tmp_path / "padded")
    combine(padded, [vault_path, short])  # 5 rows, 2 of them zero-padded from 18 to 25
    dst = str(tmp_path / "og")
    prov = combine(dst, [padded, vault_path], layout="og-marl", budget=1)
    _check_one_row(dst, _expected(padded) + _expected(vault_path))
    assert prov["episodes"] == 16 + 12 and prov["dropped_incomplete"] == 3 + 2
    assert prov["sources"][0]["dropped_steps"] == 25  # the padding is not counted as steps
