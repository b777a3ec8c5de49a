"""Checkpoint ``meta.json`` is data: the config class it names is looked up in marlvault's own
registry, never imported (a crafted checkpoint cannot make loading import a module)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from marlvault.checkpoint import META, config_classes, load_policy, save_checkpoint
from marlvault.errors import CheckpointError, UnknownConfigClassError
from marlvault.offline.train import run_config_class
from marlvault.online import ippo


def _params() -> dict:
    return {"actor": {"params": {"Dense_0": {"kernel": np.ones((3, 2), np.float32)}}}}


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint(tmp_path / "ckpt", "best", _params(), ippo.Config(), step=1,
                           return_mean=0.0)


def _tamper(folder, **changes) -> None:
    meta = json.loads((folder / META).read_text())
    meta.update(changes)
    (folder / META).write_text(json.dumps(meta))


@pytest.fixture
def trap_module(tmp_path, monkeypatch):
    """A module on ``sys.path`` that leaves a marker file when imported."""
    marker = tmp_path / "imported.txt"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mv_trap_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Config:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(lib))
    return "mv_trap_module", marker


def test_registry_holds_every_run_config():
    names = config_classes()
    assert names["marlvault.online.ippo:Config"] is ippo.Config
    for algo in ("bc", "iql-cql", "qmix-cql", "iql-bcq", "qmix-bcq"):
        assert run_config_class(algo) in names.values()


def test_crafted_config_class_is_refused_and_never_imported(saved, trap_module):
    module, marker = trap_module
    _tamper(saved, config_class=f"{module}:Config")
    with pytest.raises(UnknownConfigClassError, match="never imported") as err:
        load_policy(saved)
    assert f"{module}:Config" in str(err.value) and "marlvault.online.ippo:Config" in str(err.value)
    assert not marker.exists() and module not in sys.modules


@pytest.mark.parametrize("name", ["os:system", "os.path:join", "marlvault.online.ippo:SystemConfig",
                                  "", None, ["marlvault.online.ippo", "Config"]])
def test_any_name_outside_the_registry_is_refused(saved, name):
    _tamper(saved, config_class=name)
    with pytest.raises(UnknownConfigClassError):
        load_policy(saved)


def test_saved_values_are_range_checked_on_load(saved):
    meta = json.loads((saved / META).read_text())
    meta["config"]["system"]["gamma"] = -1.0
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="system.gamma"):
        load_policy(saved)
    _tamper(saved, config=["not", "sections"])
    with pytest.raises(CheckpointError, match="mapping of sections"):
        load_policy(saved)
    (saved / META).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        load_policy(saved)


def test_saving_a_config_outside_the_registry_is_refused(tmp_path):
    with pytest.raises(UnknownConfigClassError, match="run config of marlvault"):
        save_checkpoint(tmp_path / "ckpt", "best", _params(), ippo.SystemConfig(), step=1,
                        return_mean=0.0)
    assert not (tmp_path / "ckpt").exists()
