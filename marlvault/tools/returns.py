"""Episode return statistics and plots (histogram + violin) of one or several vaults.

The team return of an episode is the sum over its steps of the mean over agents of the rewards
(as evaluation defines it). Statistics use complete episodes only; incomplete ones (a row's tail
after its last boundary) are counted separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marlvault.tools._common import open_vault, vault_label
from marlvault.tools.index import episode_table


@dataclass(frozen=True)
class ReturnStats:
    """Return statistics of the complete episodes of one vault."""

    path: str
    """The vault's path or URL."""
    count: int
    """Number of complete episodes."""
    incomplete: int
    """Number of incomplete episodes (not in the statistics)."""
    transitions: int
    """Steps in complete episodes."""
    mean: float
    std: float
    """Population standard deviation (ddof=0)."""
    min: float
    max: float
    median: float
    q25: float
    q75: float
    iqr: float
    """``q75 - q25`` (linear-interpolated percentiles)."""
    mean_length: float
    """Mean length of the complete episodes."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON; statistics of an empty set (NaN) become ``None``."""
        return {k: None if isinstance(v, float) and v != v else v for k, v in asdict(self).items()}


def stats_from_returns(
    path: str, rets: np.ndarray, lengths: np.ndarray, incomplete: int
) -> ReturnStats:
    """Build :class:`ReturnStats` from the returns ``[E] float64`` of complete episodes."""
    rets = np.asarray(rets, np.float64)
    if rets.size == 0:
        nan = float("nan")
        return ReturnStats(path, 0, incomplete, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    q25, med, q75 = np.percentile(rets, [25, 50, 75])
    return ReturnStats(
        path=path,
        count=int(rets.size),
        incomplete=int(incomplete),
        transitions=int(np.sum(lengths)),
        mean=float(rets.mean()),
        std=float(rets.std()),
        min=float(rets.min()),
        max=float(rets.max()),
        median=float(med),
        q25=float(q25),
        q75=float(q75),
        iqr=float(q75 - q25),
        mean_length=float(np.mean(lengths)),
    )


def episode_returns(vault: Any, progress: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Returns ``[E] float64`` and lengths ``[E] int64`` of complete episodes, plus the
    number of incomplete episodes."""
    table = episode_table(vault, progress=progress)
    done = table.select(table.complete)
    return done.ret, done.length, int((~table.complete).sum())


def return_stats(vault: Any, progress: bool = False) -> ReturnStats:
    """Return statistics of one vault (a path/URL or an open vault), streaming."""
    with open_vault(vault) as v:
        rets, lengths, incomplete = episode_returns(v, progress=progress)
        return stats_from_returns(str(v.path), rets, lengths, incomplete)


def plot_returns(
    series: dict[str, np.ndarray], out: str | Path, bins: int = 30, title: str | None = None
) -> Path:
    """Write a PNG with a histogram and a violin plot of episode returns, vaults side by side.

    Args:
        series: ``{label: returns [E] float}`` for each vault, in plot order.
        out: PNG file to write (parent folders are created).
        bins: histogram bins, shared by all vaults.
        title: figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = list(series)
    data = [np.asarray(series[k], np.float64) for k in labels]
    nonempty = [d for d in data if d.size]
    fig, (ax_h, ax_v) = plt.subplots(1, 2, figsize=(11, 4.2))
    if nonempty:
        lo = min(float(d.min()) for d in nonempty)
        hi = max(float(d.max()) for d in nonempty)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        for label, d in zip(labels, data, strict=False):
            ax_h.hist(d, bins=edges, alpha=0.55 if len(data) > 1 else 0.85,
                      label=f"{label} (n={d.size})", histtype="stepfilled", edgecolor="black",
                      linewidth=0.6)
        positions = [i + 1 for i, d in enumerate(data) if d.size]
        parts = ax_v.violinplot(nonempty, positions=positions, showmedians=True)
        for body, pos in zip(parts["bodies"], positions, strict=True):
            body.set_facecolor(f"C{pos - 1}")
            body.set_alpha(0.6)
    ax_h.set(xlabel="episode return (sum over steps of mean agent reward)", ylabel="episodes",
             title="histogram")
    if nonempty:
        ax_h.legend(fontsize=8)
    ax_v.set_xticks(range(1, len(labels) + 1), labels, rotation=15, fontsize=8)
    ax_v.set(ylabel="episode return", title="violin (line: median)")
    fig.suptitle(title or "Episode returns (complete episodes)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def returns_report(
    vaults: list[Any], plot: str | Path | None = None, progress: bool = False
) -> list[ReturnStats]:
    """Statistics of several vaults and, when ``plot`` is given, one PNG comparing them."""
    stats, series = [], {}
    for item in vaults:
        with open_vault(item) as v:
            rets, lengths, incomplete = episode_returns(v, progress=progress)
            stats.append(stats_from_returns(str(v.path), rets, lengths, incomplete))
            label = vault_label(v)
            while label in series:
                label += "'"
            series[label] = rets
    if plot is not None:
        plot_returns(series, plot)
    return stats
