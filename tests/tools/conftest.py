"""Fixtures: a hand-made vault written by our engine and one written by flashbax 0.1.3."""

from __future__ import annotations

import pytest

from .helpers import make_tree, write_flashbax_vault, write_vault

META = {"marlvault": {"env": "handmade", "scenario": "three-rows", "config": {"seed": 7}}}


@pytest.fixture(scope="session")
def tree():
    return make_tree()


@pytest.fixture(scope="session")
def vault_path(tmp_path_factory, tree):
    path = str(tmp_path_factory.mktemp("tools") / "hand.vlt")
    return write_vault(path, tree, metadata=META, appends=3)


@pytest.fixture(scope="session")
def fbx_tree():
    """OG-MARL key layout: no infos.update."""
    tree = make_tree(seed=1)
    del tree["infos"]["update"]
    return tree


@pytest.fixture(scope="session")
def fbx_path(tmp_path_factory, fbx_tree):
    base = str(tmp_path_factory.mktemp("fbx"))
    return write_flashbax_vault(base, fbx_tree)
