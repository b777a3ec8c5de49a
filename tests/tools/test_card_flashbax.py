"""Dataset cards, and every tool on a vault written by flashbax 0.1.3 in the OG-MARL layout."""

from __future__ import annotations

import numpy as np

from marlvault.tools.card import dataset_card
from marlvault.tools.combine import combine
from marlvault.tools.coverage import coverage
from marlvault.tools.returns import return_stats
from marlvault.tools.subsample import SubsampleSpec, subsample
from marlvault.vault import Vault

from .helpers import expected_episodes, flat
from .test_subsample import _check_exact_copies


def test_card_has_every_section(vault_path, tmp_path):
    out = tmp_path / "card" / "CARD.md"
    text = dataset_card(vault_path, out=out)
    assert out.read_text() == text
    for needle in ("# Dataset card: handmade / three-rows", "| agents (N) | 2 |",
                   "observation space | (3,) float32", "discrete, 4 actions",
                   "global state | (5,) float32", "| complete episodes | 12 |",
                   "| incomplete episodes (excluded) | 2 |", "joint state-action coverage",
                   "2 decimal places", '"seed": 7', "![episode returns](CARD_returns.png)"):
        assert needle in text, needle
    assert (tmp_path / "card" / "CARD_returns.png").stat().st_size > 5000


def test_flashbax_vault_all_tools(fbx_path, fbx_tree, tmp_path):
    exp = [e for e in expected_episodes(fbx_tree) if e["complete"]]
    stats = return_stats(fbx_path)
    assert stats.count == len(exp) and stats.mean == np.mean([e["ret"] for e in exp])
    prov = subsample(fbx_path, str(tmp_path / "sub"), SubsampleSpec(episodes=4, seed=0))
    assert prov["episodes"] == 4
    assert len(_check_exact_copies(fbx_tree, str(tmp_path / "sub"))) == 4
    with Vault.open(str(tmp_path / "sub")) as v:
        assert v.metadata["scenario"] == "fbx-test"  # free flashbax keys carried over
    combine(str(tmp_path / "comb"), [fbx_path, fbx_path])
    with Vault.open(str(tmp_path / "comb")) as v:
        data = v.read_flat()
        for k, x in flat(fbx_tree).items():
            np.testing.assert_array_equal(data[k], np.concatenate([x, x]))
    cov = coverage(fbx_path)
    assert cov.transitions == 75 and 0 < cov.joint_coverage <= 1
    text = dataset_card(fbx_path)
    assert "fbx-test" in text and "| complete episodes | 12 |" in text


def test_flashbax_vault_without_truncations_or_state(tmp_path, fbx_tree):
    from .helpers import write_flashbax_vault

    tree = {k: v for k, v in fbx_tree.items() if k != "truncations"}
    tree["infos"] = {"legals": fbx_tree["infos"]["legals"]}
    path = write_flashbax_vault(str(tmp_path), tree, name="old", uid="Poor")
    stats = return_stats(path)
    only_term = fbx_tree["terminals"].max(-1) > 0
    assert stats.count == int(only_term.sum())
    cov = coverage(path, decimals=1)
    assert cov.state_source == "joint observation"
    obs = np.round(fbx_tree["observations"].astype(np.float64), 1).reshape(75, -1)
    act = fbx_tree["actions"].reshape(75, -1)
    assert cov.joint_unique == len({(tuple(o), tuple(a)) for o, a in zip(obs, act, strict=True)})
