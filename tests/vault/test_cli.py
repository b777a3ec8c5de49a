"""``marlvault vault info|verify`` through typer's runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.errors import VaultNotFoundError
from marlvault.vault import Vault

from .helpers import make_batch

runner = CliRunner()


def _make(path: str) -> None:
    with Vault.create(
        path, make_batch(2, 1, 0), chunks=4, metadata={"marlvault": {"env": "lbf"}}
    ) as v:
        v.append(make_batch(2, 30, 1))


def test_info_table_and_json(tmp_path):
    path = str(tmp_path / "v")
    _make(path)
    result = runner.invoke(app, ["vault", "info", path])
    assert result.exit_code == 0, result.output
    for text in (
        "infos.legals",
        "(2, 4)",
        "float32",
        "steps (T): 30",
        "complete",
        "codec",
        "marlvault",
    ):
        assert text in result.output, text
    result = runner.invoke(app, ["vault", "info", path, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 2 and summary["steps"] == 30
    assert {leaf["key"] for leaf in summary["structure"]} >= {"observations", "infos.state"}
    assert summary["episodes"]["complete"] + summary["episodes"]["incomplete"] == len(
        Vault.open(path).episodes
    )
    assert summary["marlvault"]["env"] == "lbf" and summary["size_on_disk"] > 0


def test_verify_ok_and_detects_bad_episode_index(tmp_path):
    path = str(tmp_path / "v")
    _make(path)
    result = runner.invoke(app, ["vault", "verify", path])
    assert result.exit_code == 0, result.output
    assert "30 steps checked" in result.output
    # corrupt the stored episode index (a finished episode's length), verify must fail
    from marlvault.vault.store import Store, parse_location

    store = Store(parse_location(path))
    row = store.read_array("__marlvault__/episodes", 0)
    row[2] += 1
    store.atomic_write([("__marlvault__/episodes", 0, row)])
    result = runner.invoke(app, ["vault", "verify", path])
    assert result.exit_code == 15
    assert "episode index" in result.output


def test_info_not_a_vault(tmp_path):
    result = runner.invoke(app, ["vault", "info", str(tmp_path / "missing")])
    assert result.exit_code == VaultNotFoundError.exit_code
    assert "expected a vault" in result.output
