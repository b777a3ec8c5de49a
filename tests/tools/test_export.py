"""``vault export``: the OG-MARL one-row layout (and, below, HDF5 / npz files)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from marlvault.errors import ConfigError, NotAVaultError, VaultExistsError, VaultNotFoundError
from marlvault.tools.combine import combine
from marlvault.tools.export import export
from marlvault.tools.index import episode_table
from marlvault.vault import Vault

from .helpers import make_tree, write_vault

SHORT_T = 18


@pytest.fixture(scope="module")
def padded(vault_path, tmp_path_factory):
    """5 rows: the hand-made 3x25 vault and a 2x18 one (zero-padded to 25), tails in 3 rows,
    terminal and truncated endings mixed, episodes of lengths 2..9."""
    short = make_tree([[4, 6, 8], [3, "tail15"]], steps=SHORT_T, seed=9)
    other = write_vault(str(tmp_path_factory.mktemp("short") / "short"), short, appends=2)
    out = str(tmp_path_factory.mktemp("padded") / "both")
    combine(out, [vault_path, other], budget=1)
    return out


@pytest.fixture(scope="module")
def og(padded, tmp_path_factory):
    """The og-marl export of ``padded`` at ``BASE/og.vlt/Good`` (flashbax's path shape)."""
    base = str(tmp_path_factory.mktemp("og"))
    dst = os.path.join(base, "og.vlt", "Good")
    return base, dst, export(padded, dst, layout="og-marl")


def test_og_marl_layout_is_the_complete_episodes_end_to_end(padded, og):
    _, dst, summary = og
    src = episode_table(padded)
    done = src.select(np.flatnonzero(src.complete))
    assert summary["episodes"] == done.num == 16 and summary["dropped_incomplete"] == 3
    assert summary["transitions"] == int(done.length.sum())
    assert summary["terminated"] + summary["truncated"] == done.num and summary["truncated"] > 0
    with Vault.open(padded) as s, Vault.open(dst) as v:
        assert v.num_rows == 1 and v.num_steps == int(done.length.sum()) and not v.has_padding
        src_data, data = s.read_flat(), v.read_flat()
        out = v.episodes  # sorted by start = output order
        meta = v.metadata["marlvault"]
    assert out["complete"].all() and len(out) == done.num
    np.testing.assert_array_equal(out["start"], np.concatenate([[0], np.cumsum(done.length)[:-1]]))
    np.testing.assert_array_equal(out["length"], done.length)  # documented order: (end, row)
    np.testing.assert_array_equal(out["return"], done.ret)
    np.testing.assert_array_equal(out["terminated"], done.terminated)
    np.testing.assert_array_equal(out["truncated"], done.truncated)
    for e, o in zip(range(done.num), out["start"], strict=True):  # exact copies, every key
        b, a, n = int(done.row[e]), int(done.start[e]), int(done.length[e])
        for key, x in data.items():
            np.testing.assert_array_equal(x[0, o : o + n], src_data[key][b, a : a + n], key)
    assert meta["env"] == "handmade" and meta["config"] == {"seed": 7}
    assert "row_lengths" not in meta
    prov = meta["provenance"]
    assert prov["tool"] == "export" and prov["layout"] == "og-marl" and prov["sources"] == [padded]
    assert prov["episodes"] == 16 and prov["dropped_incomplete"] == 3


def test_flashbax_reads_the_og_marl_export_as_og_marl_does(og):
    from flashbax.vault import Vault as FbxVault

    base, dst, summary = og
    fbx = FbxVault(vault_name="og.vlt", rel_dir=base, vault_uid="Good")
    exp = fbx.read().experience
    with Vault.open(dst) as v:
        ours = v.read()
    assert exp["rewards"].shape[:2] == (1, summary["transitions"])
    for key in ("observations", "actions", "rewards", "terminals", "truncations"):
        np.testing.assert_array_equal(np.asarray(exp[key]), ours[key], err_msg=key)
    np.testing.assert_array_equal(np.asarray(exp["infos"]["legals"]), ours["infos"]["legals"])
    legals = np.asarray(exp["infos"]["legals"])
    assert (legals[..., :3] == 1).all()  # zero padding would show as all-illegal steps
    ends = (np.asarray(exp["terminals"]).max(-1) + np.asarray(exp["truncations"]).max(-1)) > 0
    assert ends[0, -1] and int(ends.sum()) == summary["episodes"]


def test_export_refuses_and_overwrites_nothing(padded, og, tmp_path):
    _, dst, _ = og
    before = sorted(os.listdir(dst))
    with pytest.raises(VaultExistsError, match="expected nothing .* found a folder; fix"):
        export(padded, dst, layout="og-marl")
    assert sorted(os.listdir(dst)) == before
    with pytest.raises(VaultNotFoundError):
        export(str(tmp_path / "nothing"), str(tmp_path / "x"), layout="og-marl")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.json").write_text("{\"a\": 1}")
    with pytest.raises(NotAVaultError):
        export(str(tmp_path / "junk"), str(tmp_path / "y"), layout="og-marl")
    with pytest.raises(ConfigError, match="expected one of .*og-marl.*found 'flat'"):
        export(padded, str(tmp_path / "z"), layout="flat")
    assert not any((tmp_path / n).exists() for n in ("x", "y", "z"))


# --- HDF5 / npz ----------------------------------------------------------------------------------
FIELDS = ("row", "start", "length", "return", "terminated", "truncated", "complete")


def _load(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict, dict]:
    """(data by dotted key incl. row_lengths, episode arrays, metadata, provenance) of a file."""
    import json

    if path.endswith(".npz"):
        with np.load(path) as z:  # no pickles: every array is plain
            got = {k: z[k] for k in z.files}
        meta, prov = (json.loads(str(got.pop(k)[0])) for k in ("metadata", "provenance"))
        eps = {f: got.pop(f"episodes.{f}") for f in FIELDS}
        return got, eps, meta, prov
    import h5py

    with h5py.File(path, "r") as f:
        got = {}
        f.visititems(lambda name, obj: got.__setitem__(name.replace("/", "."), obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        meta, prov = json.loads(f.attrs["metadata"]), json.loads(f.attrs["provenance"])
    eps = {f: got.pop(f"episodes.{f}") for f in FIELDS}
    return got, eps, meta, prov


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_file_round_trip_keeps_rows_padding_and_episodes(padded, tmp_path, suffix):
    dst = str(tmp_path / f"data{suffix}")
    summary = export(padded, dst)
    got, eps, meta, prov = _load(dst)
    with Vault.open(padded) as v:
        want, index, want_meta, lengths = v.read_flat(), v.episodes, v.metadata, v.row_lengths
    np.testing.assert_array_equal(got.pop("row_lengths"), lengths)
    assert sorted(got) == sorted(want)
    for key, x in want.items():  # (B, T, ...) as stored, dtypes kept, padding included
        assert got[key].dtype == x.dtype, key
        np.testing.assert_array_equal(got[key], x, err_msg=key)
    for field in FIELDS:
        np.testing.assert_array_equal(eps[field], index[field], err_msg=field)
    assert meta == want_meta
    assert prov == summary and prov["layout"] == "rows" and prov["incomplete_kept"] == 3
    assert sorted(os.listdir(tmp_path)) == [f"data{suffix}"]  # no temporary file left


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_file_og_marl_layout_equals_the_og_marl_vault(og, tmp_path, suffix):
    _, vault_dst, vault_summary = og
    dst = str(tmp_path / f"flat{suffix}")
    summary = export(vault_summary["sources"][0], dst, layout="og-marl")
    got, eps, _, prov = _load(dst)
    with Vault.open(vault_dst) as v:
        want, index = v.read_flat(), v.episodes
    np.testing.assert_array_equal(got.pop("row_lengths"), [v.num_steps])
    for key, x in want.items():
        np.testing.assert_array_equal(got[key], x, err_msg=key)
    for field in FIELDS:
        np.testing.assert_array_equal(eps[field], index[field], err_msg=field)
    assert prov["dropped_incomplete"] == vault_summary["dropped_incomplete"] == 3
    assert summary["episodes"] == vault_summary["episodes"]


def test_file_refusals(padded, tmp_path):
    with pytest.raises(ConfigError, match=r"expected at most 0.001 MiB .* found 0\.\d MiB; fix: "
                                          r"export to a .h5 file .* --max-memory-mb to 1\b"):
        export(padded, str(tmp_path / "big.npz"), max_memory_mb=0.001)
    (tmp_path / "old.h5").write_bytes(b"keep me")
    with pytest.raises(VaultExistsError, match="found a file"):
        export(padded, str(tmp_path / "old.h5"))
    assert (tmp_path / "old.h5").read_bytes() == b"keep me"
    with pytest.raises(ConfigError, match="vault destination expected --layout og-marl"):
        export(padded, str(tmp_path / "v.vlt" / "x"))
    with pytest.raises(ConfigError, match="vault destination expected --layout og-marl"):
        export(padded, str(tmp_path / "v.vlt" / "x"), layout="rows")
    assert sorted(os.listdir(tmp_path)) == ["old.h5"]


def test_hdf5_export_streams_in_small_windows(padded, og, tmp_path, monkeypatch):
    """With 1-byte windows every read is one vault chunk and every write a few steps."""
    import marlvault.tools._common as common
    import marlvault.tools.writer as writer

    monkeypatch.setattr(common, "DEFAULT_CHUNK_BYTES", 1)
    monkeypatch.setattr(writer, "DEFAULT_CHUNK_BYTES", 1)
    export(padded, str(tmp_path / "rows.h5"))
    export(padded, str(tmp_path / "flat.h5"), layout="og-marl")
    with Vault.open(padded) as v, Vault.open(og[1]) as o:
        for name, want in (("rows.h5", v.read_flat()), ("flat.h5", o.read_flat())):
            got = _load(str(tmp_path / name))[0]
            for key, x in want.items():
                np.testing.assert_array_equal(got[key], x, err_msg=f"{name} {key}")


def test_cli_export(padded, tmp_path):
    from typer.testing import CliRunner

    from marlvault.cli import app

    runner = CliRunner()
    dst = str(tmp_path / "cli.vlt" / "Good")
    ok = runner.invoke(app, ["vault", "export", padded, dst, "--layout", "og-marl"])
    assert ok.exit_code == 0, (ok.output, ok.exception)
    assert "wrote 16 complete episodes" in ok.output
    assert "dropped 3 incomplete episodes" in ok.output
    ok = runner.invoke(app, ["vault", "export", padded, str(tmp_path / "d.npz")])
    assert ok.exit_code == 0 and "rows layout, npz" in ok.output and "3 incomplete" in ok.output
    again = runner.invoke(app, ["vault", "export", padded, dst, "--layout", "og-marl"])
    assert again.exit_code == VaultExistsError.exit_code and "error: " in again.output
    bad = runner.invoke(app, ["vault", "export", padded, str(tmp_path / "e.h5"), "--layout", "x"])
    assert bad.exit_code == ConfigError.exit_code and "expected one of rows, og-marl" in bad.output
    big = runner.invoke(app, ["vault", "export", padded, str(tmp_path / "f.npz"),
                              "--max-memory-mb", "0.001"])
    assert big.exit_code == ConfigError.exit_code and ".h5" in big.output
    assert not any((tmp_path / n).exists() for n in ("e.h5", "f.npz"))
    assert "OG-MARL" in runner.invoke(app, ["vault", "export", "--help"]).output
