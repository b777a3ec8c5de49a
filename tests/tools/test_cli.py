"""The dataset-tool commands through the CLI runner (``marlvault vault ...``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.errors import ConfigError, SchemaMismatchError
from marlvault.vault import Vault

from .helpers import make_tree, write_vault

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, ["vault", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_returns_json_and_plot(vault_path, fbx_path, tmp_path):
    out = _ok(["returns", vault_path, fbx_path, "--json", "--plot", str(tmp_path / "r.png")])
    stats = json.loads(out)
    assert [s["count"] for s in stats] == [12, 12] and stats[0]["incomplete"] == 2
    assert (tmp_path / "r.png").exists()
    table = _ok(["returns", vault_path])
    assert "12" in table and "mean" in table


def test_subsample_and_combine(vault_path, fbx_path, tmp_path):
    dst = str(tmp_path / "sub")
    out = _ok(["subsample", vault_path, dst, "--episodes", "4", "--seed", "2",
               "--return-range=-1:100", "--rows", "2"])
    assert "wrote 4 episodes" in out
    with Vault.open(dst) as v:
        assert v.num_rows == 2
        assert v.metadata["marlvault"]["provenance"]["params"]["return_range"] == [-1.0, 100.0]
    _ok(["subsample", vault_path, str(tmp_path / "t"), "--transitions", "20"])
    _ok(["subsample", vault_path, str(tmp_path / "d"), "--target-edges", "0,3,7",
         "--target-counts", "2,2"])
    _ok(["subsample", vault_path, str(tmp_path / "u"), "--update-range", "1:"])
    out = _ok(["combine", str(tmp_path / "comb"), vault_path, dst])
    assert "wrote 5 rows from 2 vaults" in out
    bad = runner.invoke(app, ["vault", "combine", str(tmp_path / "x"), vault_path, fbx_path])
    assert bad.exit_code == SchemaMismatchError.exit_code and "error: " in bad.output
    assert "infos.update" in bad.output
    bad = runner.invoke(app, ["vault", "subsample", vault_path, str(tmp_path / "y"),
                              "--episodes", "2", "--transitions", "9"])
    assert bad.exit_code == ConfigError.exit_code and "error: " in bad.output


def test_coverage_and_card(vault_path, tmp_path):
    cov = json.loads(_ok(["coverage", vault_path, "--json", "--decimals", "1"]))
    assert cov["transitions"] == 75 and cov["decimals"] == 1
    text = _ok(["coverage", vault_path])
    assert "joint state-action coverage (state = infos.state)" in text
    _ok(["card", vault_path, "-o", str(tmp_path / "CARD.md")])
    assert "## Coverage" in (tmp_path / "CARD.md").read_text()
    assert "# Dataset card" in _ok(["card", vault_path])


@pytest.mark.parametrize("argv", [["returns", "/nonexistent/vault"]])
def test_errors_have_exit_codes(argv):
    from marlvault.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["vault", *argv])
    assert exc.value.code not in (0, 1)


def test_main_exit_code_schema_mismatch(tmp_path, vault_path, capsys):
    from marlvault.cli import main

    other = make_tree(seed=3)
    del other["infos"]["update"]
    path = write_vault(str(tmp_path / "o"), other)
    with pytest.raises(SystemExit) as exc:
        main(["vault", "combine", str(tmp_path / "c"), vault_path, path])
    assert exc.value.code == SchemaMismatchError.exit_code
    assert "infos.update" in capsys.readouterr().err
