"""Run reporting: console (progress bar + a line per evaluation), TensorBoard, marl-eval JSON.

:class:`RunLogger` fans one call per evaluation out to the enabled sinks. The JSON file follows the
marl-eval raw-data layout, so marl-eval's aggregation and plotting tools read it directly::

    {env_name: {task: {algorithm: {"seed_<s>": {
        "step_0": {"step_count": int, "episode_return": [E floats], ...},
        ...
        "absolute_metrics": {"episode_return": [E_final floats], ...}}}}}

Metric lists hold one value per evaluation episode; ``absolute_metrics`` hold one per episode
of the final evaluation of the best parameters.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marlvault.errors import ConfigError


@dataclass(frozen=True)
class RunInfo:
    """Identity of a run, as marl-eval keys it."""

    env_name: str
    task: str
    algorithm: str
    seed: int
    total_steps: int
    has_win: bool = False
    """The environment reports wins (SMAX): the console shows the win rate."""


def _scalar(x: Any) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64)))


class ConsoleSink:
    """A rich progress bar over env steps and one line per evaluation."""

    def __init__(self, info: RunInfo) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=False, highlight=False)
        self.has_win = info.has_win
        self.progress = Progress(
            TextColumn(f"{info.algorithm} {info.env_name}/{info.task}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=info.total_steps)
        self.progress.start()

    def log(self, step: int, sps: float, episodes: dict[str, np.ndarray], train: dict) -> None:
        ret = episodes["episode_return"]
        shown = {"actor_loss": "pi", "value_loss": "v", "entropy": "H"}
        losses = " ".join(f"{short} {train[k]:.4f}" for k, short in shown.items() if k in train)
        win = ""
        if self.has_win and "win_rate" in episodes:
            win = f"win {np.mean(episodes['win_rate']):4.2f}  "
        self.progress.console.print(
            f"step {step:>10,}  sps {sps:>7,.0f}  return {ret.mean():7.3f} ± {ret.std():6.3f}  "
            f"{win}{losses}",
            soft_wrap=True,
        )
        self.progress.update(self.task, completed=step)

    def close(self) -> None:
        self.progress.stop()


class TensorBoardSink:
    """Scalars under ``eval/``, ``train/`` and ``perf/`` in ``<run_dir>/tensorboard``."""

    def __init__(self, run_dir: Path) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, sps: float, episodes: dict[str, np.ndarray], train: dict) -> None:
        for name, values in episodes.items():
            self.writer.add_scalar(f"eval/{name}_mean", _scalar(values), step)
        for name, value in train.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        self.writer.add_scalar("perf/sps", sps, step)

    def close(self) -> None:
        self.writer.close()


class MarlEvalJsonSink:
    """``<run_dir>/metrics.json`` in the marl-eval layout, rewritten atomically after each call."""

    def __init__(self, run_dir: Path, info: RunInfo) -> None:
        self.path = run_dir / "metrics.json"
        self.info = info
        self.run: dict[str, Any] = {}
        self.count = 0

    def log(self, step: int, sps: float, episodes: dict[str, np.ndarray], train: dict) -> None:
        del sps, train
        self.run[f"step_{self.count}"] = {"step_count": int(step), **_lists(episodes)}
        self.count += 1
        self._write()

    def log_absolute(self, episodes: dict[str, np.ndarray]) -> None:
        self.run["absolute_metrics"] = _lists(episodes)
        self._write()

    def _write(self) -> None:
        i = self.info
        data = {i.env_name: {i.task: {i.algorithm: {f"seed_{i.seed}": self.run}}}}
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def close(self) -> None:
        pass


def _lists(episodes: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in episodes.items()}


class RunLogger:
    """Fans evaluations out to the console, TensorBoard and marl-eval JSON sinks.

    Args:
        run_dir: folder for the files (created).
        info: the run's identity.
        console / tensorboard / json: which sinks to enable.
    """

    def __init__(
        self, run_dir: Path, info: RunInfo, *, console: bool, tensorboard: bool, json: bool
    ) -> None:
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"logger.base_dir: cannot create {self.run_dir} ({err}); fix: choose a writable "
                f"directory, e.g. logger.base_dir=results"
            ) from None
        self.json = MarlEvalJsonSink(self.run_dir, info) if json else None
        self.sinks: list[Any] = [s for s in (self.json,) if s is not None]
        if tensorboard:
            self.sinks.append(TensorBoardSink(self.run_dir))
        if console:
            self.sinks.append(ConsoleSink(info))

    def log(self, step: int, sps: float, episodes: dict[str, Any], train: dict[str, float]) -> None:
        """One evaluation: ``episodes`` maps metric -> [E] per-episode values."""
        episodes = {k: np.asarray(v) for k, v in episodes.items()}
        for sink in self.sinks:
            sink.log(step, sps, episodes, train)

    def log_absolute(self, episodes: dict[str, Any]) -> None:
        """The final (absolute) evaluation of the best parameters, into the JSON file."""
        if self.json is not None:
            self.json.log_absolute({k: np.asarray(v) for k, v in episodes.items()})

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
