"""Episode tables and return statistics are exact on hand-made vaults."""

from __future__ import annotations

import numpy as np
import pytest

from marlvault.tools.index import episode_table, scan_episodes
from marlvault.tools.returns import plot_returns, return_stats, returns_report

from .helpers import expected_episodes


def _as_set(table):
    return {(int(r), int(s), int(n), bool(c)) for r, s, n, c in
            zip(table.row, table.start, table.length, table.complete, strict=True)}


def test_episode_table_matches_direct_loop(vault_path, tree):
    expected = expected_episodes(tree)
    for table in (episode_table(vault_path), scan_episodes(vault_path)):
        assert _as_set(table) == {(e["row"], e["start"], e["length"], e["complete"])
                                  for e in expected}
        got = {(int(r), int(s)): float(x) for r, s, x in
               zip(table.row, table.start, table.ret, strict=True)}
        for e in expected:
            assert got[(e["row"], e["start"])] == e["ret"]  # exact: quarter multiples
        stops = table.start + table.length
        assert np.all(np.diff(stops) >= 0), "table sorted by end step"


def test_update_range_per_episode(vault_path, tree):
    table = scan_episodes(vault_path, update_key="infos.update")
    upd = tree["infos"]["update"]
    for r, s, n, lo, hi in zip(table.row, table.start, table.length, table.update_min,
                               table.update_max, strict=True):
        assert lo == upd[r, s : s + n].min() and hi == upd[r, s : s + n].max()


def test_return_stats_exact(vault_path, tree):
    expected = expected_episodes(tree)
    rets = np.array([e["ret"] for e in expected if e["complete"]])
    stats = return_stats(vault_path)
    assert stats.count == 12 and stats.incomplete == 2
    assert stats.transitions == sum(e["length"] for e in expected if e["complete"])
    assert stats.mean == pytest.approx(rets.mean(), abs=1e-12)
    assert stats.std == pytest.approx(rets.std(), abs=1e-12)
    assert (stats.min, stats.max) == (rets.min(), rets.max())
    assert stats.median == np.median(rets)
    q25, q75 = np.percentile(rets, [25, 75])
    assert stats.iqr == pytest.approx(q75 - q25)


def _saved_figures(monkeypatch):
    """Capture every matplotlib figure saved (the file is still written)."""
    from matplotlib.figure import Figure

    saved, real = [], Figure.savefig

    def savefig(fig, *args, **kwargs):
        saved.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def _polygon_area(xy):
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_plot_several_vaults(vault_path, fbx_path, tree, fbx_tree, tmp_path, monkeypatch):
    saved = _saved_figures(monkeypatch)
    png = tmp_path / "cmp.png"
    stats = returns_report([vault_path, fbx_path], plot=png)
    assert [s.count for s in stats] == [12, 12]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    (fig,) = saved
    ax_hist, ax_violin = fig.axes
    wants = [np.array([e["ret"] for e in expected_episodes(t) if e["complete"]])
             for t in (tree, fbx_tree)]
    # histogram: one filled step polygon per vault whose area / bin width is its episode count
    edges = np.linspace(min(w.min() for w in wants), max(w.max() for w in wants), 31)
    areas = [_polygon_area(patch.get_xy()) for patch in ax_hist.patches]
    assert np.allclose(np.array(areas) / (edges[1] - edges[0]), [w.size for w in wants])
    labels = [t.get_text() for t in ax_hist.get_legend().get_texts()]
    assert [label.split(" (n=")[1] for label in labels] == ["12)", "12)"]
    # violin: horizontal lines at each vault's min, max and median of its complete returns
    lines = [sorted(float(seg[0, 1]) for seg in c.get_segments()) for c in ax_violin.collections
             if hasattr(c, "get_segments") and len(c.get_segments()) == 2
             and all(seg[0, 1] == seg[-1, 1] for seg in c.get_segments())]
    want_lines = [sorted(float(f(w)) for w in wants) for f in (np.min, np.max, np.median)]
    assert np.allclose(sorted(lines), sorted(want_lines))


def test_plot_empty_series(tmp_path):
    out = plot_returns({"none": np.zeros(0)}, tmp_path / "e.png")
    assert out.exists()


def test_no_complete_episode_gives_none_in_json(tmp_path):
    from marlvault.tools.returns import stats_from_returns

    d = stats_from_returns("x", np.zeros(0), np.zeros(0, int), incomplete=3).to_dict()
    assert d["count"] == 0 and d["incomplete"] == 3 and d["mean"] is None
