"""Dataset tools on any vault: return statistics and plots, subsampling, combining, coverage,
dataset cards, export. All stream in bounded memory (except an npz export, which is size-capped);
see ``docs/TOOLS.md``."""

from marlvault.tools.card import dataset_card
from marlvault.tools.combine import combine
from marlvault.tools.coverage import Coverage, coverage
from marlvault.tools.export import export
from marlvault.tools.index import EpisodeTable, episode_table, scan_episodes
from marlvault.tools.returns import ReturnStats, plot_returns, return_stats, returns_report
from marlvault.tools.subsample import SubsampleSpec, select_episodes, subsample

__all__ = [
    "Coverage",
    "EpisodeTable",
    "ReturnStats",
    "SubsampleSpec",
    "combine",
    "coverage",
    "dataset_card",
    "episode_table",
    "export",
    "plot_returns",
    "return_stats",
    "returns_report",
    "scan_episodes",
    "select_episodes",
    "subsample",
]
