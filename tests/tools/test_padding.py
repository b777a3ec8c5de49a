"""combine / subsample write ``row_lengths``; episodes, tools and the CLI skip the padding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.tools.card import dataset_card
from marlvault.tools.combine import combine
from marlvault.tools.coverage import coverage
from marlvault.tools.index import episode_table
from marlvault.tools.returns import return_stats
from marlvault.tools.subsample import SubsampleSpec, subsample
from marlvault.vault import Vault

from .helpers import T, make_tree, write_vault

SHORT_T = 18
COLUMNS = ("row", "start", "length", "return", "terminated", "truncated", "complete")
runner = CliRunner()


@pytest.fixture(scope="module")
def sources(vault_path, tmp_path_factory):
    """The 3-row, 25-step hand-made vault and a 2-row, 18-step one (row 1 ends in a tail)."""
    short = make_tree([[4, 6, 8], [3, "tail15"]], steps=SHORT_T, seed=9)
    other = write_vault(str(tmp_path_factory.mktemp("short") / "short"), short, appends=2)
    return vault_path, other


@pytest.fixture(scope="module")
def combined(sources, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("combined") / "both")
    combine(out, list(sources), budget=1)
    return out


def _records(index: np.ndarray, row_offset: int = 0) -> list[tuple]:
    return sorted(
        (int(e["row"]) + row_offset, *(e[c].item() for c in COLUMNS[1:])) for e in index
    )


def test_combine_episodes_are_the_union_of_the_sources(sources, combined):
    with Vault.open(sources[0]) as a, Vault.open(sources[1]) as b:
        want = _records(a.episodes) + _records(b.episodes, row_offset=a.num_rows)
    with Vault.open(combined) as v:
        np.testing.assert_array_equal(v.row_lengths, [T, T, T, SHORT_T, SHORT_T])
        assert v.metadata["marlvault"]["row_lengths"] == [T, T, T, SHORT_T, SHORT_T]
        assert v.has_padding and v.num_steps == T
        got = _records(v.episodes)
    assert got == sorted(want)  # no zero-filled tail episode in rows 3 and 4
    assert max(e[1] + e[2] for e in got if e[0] >= 3) == SHORT_T


def test_streamed_episode_table_skips_padding(combined):
    fast = episode_table(combined)  # from the vault index
    slow = episode_table(combined, update_key="infos.update")  # own streaming pass
    for field in ("row", "start", "length", "ret", "complete"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field), err_msg=field)
    assert int((~slow.complete).sum()) == 3  # the real tails: two of vault 1, one of vault 2


def test_returns_and_card_ignore_padding(sources, combined):
    stats = return_stats(combined)
    parts = [return_stats(p) for p in sources]
    assert stats.incomplete == sum(p.incomplete for p in parts) == 3
    assert stats.count == sum(p.count for p in parts)
    text = dataset_card(combined)
    assert f"| transitions (valid steps of all rows) | {3 * T + 2 * SHORT_T} |" in text
    assert f"| padded rows | 2 (valid steps {SHORT_T}..{T}; padding excluded) |" in text


def _direct_joint_pairs(path: str, decimals: int) -> tuple[int, int]:
    """(transitions, distinct (state, joint action) pairs) over valid steps, by a plain loop."""
    with Vault.open(path) as v:
        data, lengths = v.read_flat(), v.row_lengths
    seen, count = set(), 0
    for b in range(len(lengths)):
        for t in range(int(lengths[b])):
            state = np.rint(data["infos.state"][b, t] * 10**decimals).astype(np.int64)
            seen.add((tuple(state), tuple(data["actions"][b, t])))
            count += 1
    return count, len(seen)


def test_coverage_counts_only_valid_steps(combined):
    cov = coverage(combined, decimals=1, budget=200)  # small chunks cross the padding border
    count, unique = _direct_joint_pairs(combined, 1)
    assert cov.transitions == count == 3 * T + 2 * SHORT_T
    assert cov.joint_unique == unique


def test_subsample_rows_writes_row_lengths(vault_path, tmp_path):
    dst = str(tmp_path / "sub")
    prov = subsample(vault_path, dst, SubsampleSpec(episodes=7, rows=3, seed=3))
    with Vault.open(dst) as v:
        lengths = v.row_lengths
        assert lengths.tolist() == prov["row_lengths"] == v.metadata["marlvault"]["row_lengths"]
        assert int(lengths.sum()) == prov["transitions"] and v.has_padding
        index = v.episodes
    assert len(index) == 7 and index["complete"].all()  # no zero tail episode anywhere
    assert coverage(dst).transitions == prov["transitions"]
    assert int(episode_table(dst, update_key="infos.update").length.sum()) == prov["transitions"]


def test_subsample_of_padded_vault_gets_its_own_row_lengths(combined, tmp_path):
    dst = str(tmp_path / "sub1")
    prov = subsample(combined, dst, SubsampleSpec(rows=2))
    with Vault.open(dst) as v:
        assert v.metadata["marlvault"]["row_lengths"] == prov["row_lengths"]
        assert len(prov["row_lengths"]) == 2
        assert v.episodes["complete"].all()
    assert prov["episodes"] == int(episode_table(combined).complete.sum())


def test_cli_info_shows_padding(combined, vault_path):
    result = runner.invoke(app, ["vault", "info", combined])
    assert result.exit_code == 0, result.output
    assert f"padded rows: 2 (valid steps {SHORT_T}..{T}" in result.output
    assert f"transitions: {3 * T + 2 * SHORT_T}" in result.output
    summary = json.loads(runner.invoke(app, ["vault", "info", combined, "--json"]).output)
    assert summary["padding"] == {"padded_rows": 2, "padded_steps": 2 * (T - SHORT_T),
                                  "min_valid_steps": SHORT_T, "max_valid_steps": T}
    plain = runner.invoke(app, ["vault", "info", vault_path])
    assert "padded rows" not in plain.output


def test_cli_verify_checks_row_lengths(combined, tmp_path):
    result = runner.invoke(app, ["vault", "verify", combined])
    assert result.exit_code == 0, result.output
    import shutil

    bad = str(tmp_path / "bad")
    shutil.copytree(combined, bad)
    meta_path = f"{bad}/metadata.json"
    with open(meta_path) as f:
        meta = json.load(f)
    meta["marlvault"]["row_lengths"] = [T, T, T, SHORT_T, T + 4]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    result = runner.invoke(app, ["vault", "verify", bad])
    assert result.exit_code == 15
    assert "row_lengths: expected every row's valid length <= vault_index 25" in result.output
    meta["marlvault"]["row_lengths"] = [T, T, "x"]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    result = runner.invoke(app, ["vault", "verify", bad])
    assert result.exit_code == 15 and "expected a list of 5 integers >= 0" in result.output
