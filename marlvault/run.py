"""The host run skeleton every algorithm plugs into, online (IPPO/MAPPO) and offline (BC, ...).

A run evaluates its policy after each block of training and hands the result to a
:class:`RunSession`, which owns everything the host does around the learner:

- **run folder**: ``<logger.base_dir>/<logger.run_name>``, the name defaulting to
  ``<algorithm>_<env>_<scenario>_seed<seed>`` (:func:`run_dir`). There is no timestamp: the same
  algorithm, task and seed always use the same folder, so scripts and tests find it, and a rerun
  replaces its metrics and checkpoints; set ``logger.run_name`` to keep several runs apart.
- **logging**: console, TensorBoard and marl-eval JSON (:class:`marlvault.logging.RunLogger`).
  In a multi-process run every process logs to its console; only process 0 writes TensorBoard,
  JSON and checkpoints.
- **best tracking**: the parameters of the best mean evaluation return so far (ties keep the
  earlier ones), on the host.
- **checkpoints** (``logger.checkpoint``): ``checkpoints/last`` after every evaluation and
  ``checkpoints/best`` whenever the best improves; with ``logger.keep_checkpoints`` also
  ``checkpoints/step_<step>`` for every evaluation (:func:`step_tag`).

The evaluation loop itself is :func:`marlvault.evaluation.first_episodes`.

>>> with RunSession(info, config.logger, config) as session:            # doctest: +SKIP
...     session.evaluated(step, sps, metrics, train_losses, params)
...     session.log_absolute(final_metrics)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from marlvault.checkpoint import save_checkpoint
from marlvault.distributed import is_main
from marlvault.evaluation import EvalMetrics, episode_dict, summarise
from marlvault.logging import RunInfo, RunLogger


@dataclass(frozen=True)
class LoggerConfig:
    """Where and how the run reports."""

    base_dir: str = "results"
    """Directory under which the run's folder (logs, JSON, checkpoints) is created."""
    run_name: str | None = None
    """Name of the run folder; default ``<algo>_<env>_<scenario>_seed<seed>``."""
    console: bool = True
    """Progress bar and one line per evaluation on the console."""
    tensorboard: bool = True
    """Write TensorBoard event files."""
    json: bool = True
    """Write marl-eval JSON (``metrics.json``)."""
    checkpoint: bool = True
    """Save orbax checkpoints of the best and the last parameters."""
    keep_checkpoints: bool = False
    """Also keep the parameters of every evaluation, ``checkpoints/step_<step>`` (12 digits), for
    picking policies of different quality later (``marlvault dataset build``)."""



def run_dir(logger: Any, info: RunInfo) -> Path:
    """``<base_dir>/<run_name>``, default name ``<algorithm>_<env>_<scenario>_seed<seed>``.

    Args:
        logger: the run's logger config (``base_dir``, ``run_name``).
        info: the run's identity.
    """
    name = logger.run_name or f"{info.algorithm}_{info.env_name}_{info.task}_seed{info.seed}"
    return Path(logger.base_dir) / name


def step_tag(step: int) -> str:
    """Checkpoint tag of the evaluation at ``step``: ``step_000000123456`` (sorts by step)."""
    return f"step_{int(step):012d}"


class Best:
    """The best evaluation so far and a host copy of its parameters."""

    def __init__(self) -> None:
        self.ret, self.step, self.params = -math.inf, 0, None

    def offer(self, ret: float, step: int, params: Any) -> bool:
        """Keep ``params`` if ``ret`` beats the best so far (the first offer always does)."""
        if ret <= self.ret and self.params is not None:
            return False
        self.ret, self.step, self.params = ret, step, jax.device_get(params)
        return True


class RunSession:
    """Host-side bookkeeping of one run: folder, logger, history, best tracking, checkpoints.

    Args:
        info: the run's identity (names the folder and the marl-eval JSON keys).
        logger: the run's logger config (``base_dir``, ``run_name``, ``console``,
            ``tensorboard``, ``json``, ``checkpoint``).
        config: the whole run config, saved with every checkpoint.
    """

    def __init__(self, info: RunInfo, logger: Any, config: Any) -> None:
        self.config = config
        self.run_dir = run_dir(logger, info)
        main = is_main()  # in a multi-process run only process 0 writes files
        self.logger = RunLogger(self.run_dir, info, console=logger.console,
                                tensorboard=logger.tensorboard and main,
                                json=logger.json and main)  # fmt: skip
        self.checkpoint_dir = self.run_dir / "checkpoints" if logger.checkpoint and main else None
        self.keep_all = bool(logger.checkpoint and logger.keep_checkpoints)
        self.best = Best()
        self.history: list[dict[str, float]] = []
        self.last_eval: dict[str, float] = {}

    def evaluated(self, step: int, sps: float, metrics: EvalMetrics, train: dict[str, float],
                  params: Any, saved: Any = None) -> dict[str, float]:
        """Logs one evaluation, tracks the best parameters and checkpoints.

        Args:
            step: the run's progress (env steps online, updates offline).
            sps: its speed (per second) over the last block.
            metrics: the evaluation, ``[E]`` per episode.
            train: mean training losses of the block.
            params: the evaluated parameters (what :attr:`best` keeps).
            saved: what the checkpoints hold (default ``params``).

        Returns:
            the evaluation's :func:`~marlvault.evaluation.summarise` dict.
        """
        summary = summarise(metrics)
        self.logger.log(step, sps, episode_dict(metrics), train)
        self.history.append({"step": step, "sps": sps, **summary, **train})
        self.last_eval = summary
        ret, saved = summary["return_mean"], params if saved is None else saved
        self._save("last", saved, step, ret)
        if self.keep_all:
            self._save(step_tag(step), saved, step, ret)
        if self.best.offer(ret, step, params):
            self._save("best", saved, step, ret)
        return summary

    def log_absolute(self, metrics: EvalMetrics) -> None:
        """The final evaluation of the best parameters (marl-eval "absolute metrics")."""
        self.logger.log_absolute(episode_dict(metrics))

    def _save(self, tag: str, tree: Any, step: int, ret: float) -> None:
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, tag, tree, self.config, step=step,
                            return_mean=ret)  # fmt: skip

    def close(self) -> None:
        self.logger.close()

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
