"""Offline training runs: vault -> dataset -> algorithm, with periodic online evaluation.

:func:`train_offline` is the library entry point (the CLI and the demo call it)::

    summary = train_offline("bc", ["vault=vaults/rware.vlt/Good", "system.num_updates=2000"])

The run config is a frozen dataclass of sections (``env``, ``data``, ``arch``, ``logger``,
``system``) resolved by :func:`marlvault.config.load`; ``system`` is the algorithm's own
``Config``. The environment and scenario come from the vault's ``metadata["marlvault"]`` unless
``env=``/``scenario=`` are given. ``num_updates`` are split into ``arch.num_evaluation`` blocks;
after each block the greedy policy is evaluated on ``arch.num_eval_episodes`` parallel episodes,
logged (console, TensorBoard, marl-eval JSON) and checkpointed (``last``, and ``best`` when its
mean return is the best so far). At the end the best parameters are evaluated on
``arch.final_eval_episodes`` episodes (marl-eval "absolute metrics").
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from marlvault import config as cfg
from marlvault.errors import ConfigError, DatasetError
from marlvault.offline import bc, iql_cql, qmix_cql
from marlvault.offline.common import Algorithm, make_scan_train
from marlvault.offline.dataset import DatasetConfig, OfflineDataset
from marlvault.offline.evaluate import make_evaluator, summarise

ALGORITHMS = {"bc": bc, "iql-cql": iql_cql, "qmix-cql": qmix_cql}


@dataclass(frozen=True)
class OfflineEnvConfig:
    """Environment used for evaluation (default: the one recorded in the vault's metadata)."""

    env_name: str | None = None
    """Registry name; ``None`` takes ``metadata["marlvault"]["env_name"]``."""
    scenario: str | None = None
    """Scenario; ``None`` takes ``metadata["marlvault"]["scenario"]``."""


@dataclass(frozen=True)
class DataConfig:
    """Which vault, and how it is read."""

    vault: str | None = None
    """Path or URL of the vault (``vault=PATH`` on the command line)."""
    mode: str = "auto"
    """``auto``, ``memory`` or ``stream``."""
    memory_budget_mb: int = 2048
    """Largest decoded vault ``auto`` puts on the device."""
    shuffle_windows: int = 4096
    """Streaming shuffle-buffer size, in windows."""
    steps_per_chunk: int = 0
    """Streaming read size in time steps (0: the vault's chunk)."""
    add_agent_ids: bool = True
    """Append one-hot agent ids to observations."""


@dataclass(frozen=True)
class OfflineArchConfig:
    """Seed and evaluation cadence."""

    seed: int = 42
    """Seed of initialisation, sampling and evaluation."""
    num_evaluation: int = 10
    """Evaluations during the run (``num_updates`` is split evenly between them)."""
    num_eval_episodes: int = 32
    """Episodes per evaluation, run in parallel."""
    final_eval_episodes: int = 128
    """Episodes of the final evaluation of the best parameters."""
    eval_epsilon: float = 0.0
    """Evaluation: probability of a random legal action per agent and step (0: none)."""
    eval_greedy: bool = True
    """Evaluation: best legal action (``false``: sample from the learnt policy — BC's own
    distribution, Boltzmann over Q-values for the Q-learners)."""

    def __post_init__(self) -> None:
        cfg.require_at_least("arch", self, "num_evaluation", "num_eval_episodes", "final_eval_episodes")
        if not 0.0 <= self.eval_epsilon <= 1.0:
            raise ConfigError(f"arch.eval_epsilon: expected in [0, 1], got {self.eval_epsilon}")


def _logger_default() -> cfg.LoggerConfig:
    return cfg.LoggerConfig(base_dir="results/offline")


@dataclass(frozen=True)
class BCRunConfig:
    """``marlvault offline train bc``."""

    env: OfflineEnvConfig = field(default_factory=OfflineEnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    arch: OfflineArchConfig = field(default_factory=OfflineArchConfig)
    logger: cfg.LoggerConfig = field(default_factory=_logger_default)
    system: bc.Config = field(default_factory=bc.Config)


@dataclass(frozen=True)
class IQLCQLRunConfig:
    """``marlvault offline train iql-cql``."""

    env: OfflineEnvConfig = field(default_factory=OfflineEnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    arch: OfflineArchConfig = field(default_factory=OfflineArchConfig)
    logger: cfg.LoggerConfig = field(default_factory=_logger_default)
    system: iql_cql.Config = field(default_factory=iql_cql.Config)


@dataclass(frozen=True)
class QMIXCQLRunConfig:
    """``marlvault offline train qmix-cql``."""

    env: OfflineEnvConfig = field(default_factory=OfflineEnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    arch: OfflineArchConfig = field(default_factory=OfflineArchConfig)
    logger: cfg.LoggerConfig = field(default_factory=_logger_default)
    system: qmix_cql.Config = field(default_factory=qmix_cql.Config)


RUN_CONFIGS = {"bc": BCRunConfig, "iql-cql": IQLCQLRunConfig, "qmix-cql": QMIXCQLRunConfig}


def _algo_module(algo: str) -> Any:
    if algo not in ALGORITHMS:
        raise ConfigError(
            f"offline algorithm {algo!r}: expected one of {sorted(ALGORITHMS)}; fix: e.g. "
            "`marlvault offline train bc vault=PATH`"
        )
    return ALGORITHMS[algo]


def load_config(algo: str, overrides: Sequence[str] = ()) -> Any:
    """Resolve the run config of ``algo`` from ``key=value`` overrides (``vault=`` included)."""
    _algo_module(algo)
    items = [f"data.vault={a.partition('=')[2]}" if a.startswith("vault=") else a
             for a in overrides]
    return cfg.load(RUN_CONFIGS[algo], None, items)


def _window(system: Any) -> tuple[int, int]:
    """(seq_len, stride) of the windows an algorithm config trains on."""
    if isinstance(system, bc.Config):
        return system.window_len, (0 if system.recurrent else 1)
    return system.seq_len, 0


def open_dataset(algo: str, config: Any) -> OfflineDataset:
    """The vault of ``config.data`` opened for ``algo``'s windows."""
    if not config.data.vault:
        raise ConfigError(
            "data.vault: expected the path or URL of a vault, found none; fix: pass vault=PATH"
        )
    seq_len, stride = _window(config.system)
    return OfflineDataset(config.data.vault, DatasetConfig(
        seq_len=seq_len,
        stride=stride,
        add_agent_ids=config.data.add_agent_ids,
        mode=config.data.mode,
        memory_budget_bytes=config.data.memory_budget_mb * 1024**2,
        shuffle_windows=config.data.shuffle_windows,
        steps_per_chunk=config.data.steps_per_chunk,
        need_state=algo == "qmix-cql",
    ))


def resolve_env(config: Any, dataset: OfflineDataset) -> Any:
    """The evaluation environment: config overrides, else the vault's metadata; checked."""
    from marlvault.envs import make_env

    name = config.env.env_name or dataset.env_name
    scenario = config.env.scenario or dataset.scenario
    if not name or not scenario:
        raise ConfigError(
            f"{dataset.path}: the vault's metadata names no environment (found env_name={name!r}, "
            f"scenario={scenario!r}); fix: pass env=NAME scenario=SCENARIO"
        )
    env = make_env(name, scenario)
    spec, ds = env.spec, dataset.spec
    found = (spec.num_agents, spec.obs_dim, spec.action_dim)
    if found != (ds.num_agents, ds.obs_dim, ds.action_dim):
        raise DatasetError(
            f"{dataset.path}: expected env {name}/{scenario} to match the vault's (agents, obs, "
            f"actions) = {(ds.num_agents, ds.obs_dim, ds.action_dim)}, found {found}; fix: pass "
            "the env and scenario the vault was recorded in"
        )
    return env


class _Updater:
    """Runs blocks of updates in either dataset mode; ``run(state, n, key) -> (state, metrics)``."""

    def __init__(self, algo: Algorithm, dataset: OfflineDataset, seed: int) -> None:
        self.algo, self.dataset = algo, dataset
        if dataset.mode == "memory":
            self.data = dataset.device_data()
            self.sample = dataset.sampler(algo.batch_size)
            self.compiled: dict[int, Any] = {}
        else:
            self.batches = dataset.batches(algo.batch_size, seed)
            self.update = jax.jit(algo.update)

    def run(self, state: Any, num: int, key: jax.Array) -> tuple[Any, dict]:
        if self.dataset.mode == "memory":
            if num not in self.compiled:
                self.compiled[num] = jax.jit(make_scan_train(self.algo, self.sample, num))
            return self.compiled[num](state, self.data, key)
        metrics = []
        for _ in range(num):
            state, m = self.update(state, next(self.batches))
            metrics.append(m)
        return state, jax.tree.map(lambda *xs: np.mean(np.stack(xs)), *metrics)


def _run_dir(config: Any, algo: str, env: Any) -> Path:
    name = config.logger.run_name or (
        f"{algo}_{env.spec.env_name}_{env.spec.scenario}_seed{config.arch.seed}_"
        f"{time.strftime('%Y%m%d-%H%M%S')}"
    )
    return Path(config.logger.base_dir) / name


def _episodes(metrics: Any) -> dict[str, np.ndarray]:
    return {"episode_return": np.asarray(metrics.episode_return),
            "episode_length": np.asarray(metrics.episode_length)}


class _Best:
    """The best evaluation so far and a host copy of its parameters."""

    def __init__(self) -> None:
        self.ret, self.step, self.params = -np.inf, 0, None

    def offer(self, ret: float, step: int, params: Any) -> bool:
        if ret <= self.ret and self.params is not None:
            return False
        self.ret, self.step, self.params = ret, step, jax.device_get(params)
        return True


def _checkpoint(config: Any, run_dir: Path, tag: str, params: Any, step: int, ret: float) -> None:
    if config.logger.checkpoint:
        from marlvault.checkpoint import save_checkpoint

        save_checkpoint(run_dir / "checkpoints", tag, params, config, step=step, return_mean=ret)


def _make_logger(config: Any, run_dir: Path, algo: str, env: Any) -> Any:
    from marlvault.logging import RunInfo, RunLogger

    info = RunInfo(env.spec.env_name, env.spec.scenario, algo, config.arch.seed,
                   config.system.num_updates)
    lg = config.logger
    return RunLogger(run_dir, info, console=lg.console, tensorboard=lg.tensorboard, json=lg.json)


def train_offline(algo: str, config: Any = ()) -> dict[str, Any]:
    """Train ``algo`` (``bc``, ``iql-cql``, ``qmix-cql``) offline and evaluate it online.

    Args:
        algo: the algorithm name.
        config: its run config (``RUN_CONFIGS[algo]``) or a list of ``key=value`` overrides.

    Returns:
        a summary: algorithm, env, scenario, vault, dataset mode and size, dataset mean episode
        return, updates and updates/s (blocks after the first, so without compilation), best evaluation step and return, final evaluation
        (``final_return_mean``/``std`` over ``arch.final_eval_episodes``), run folder.
    """
    if not dataclasses.is_dataclass(config):
        config = load_config(algo, list(config))
    dataset = open_dataset(algo, config)
    env = resolve_env(config, dataset)
    algorithm = _algo_module(algo).make_algorithm(config.system, dataset.spec)
    run_dir = _run_dir(config, algo, env)
    logger = _make_logger(config, run_dir, algo, env)
    evaluators: dict[int, Any] = {}

    def evaluator(num_episodes: int) -> Any:
        if num_episodes not in evaluators:  # one compilation per episode count
            evaluators[num_episodes] = make_evaluator(
                env, algorithm, num_episodes, dataset.spec.add_agent_ids, config.arch.eval_epsilon,
                config.arch.eval_greedy)
        return evaluators[num_episodes]

    try:
        best, stats = _train_loop(algorithm, dataset, evaluator, config, logger, run_dir)
        final_eval = evaluator(config.arch.final_eval_episodes)
        final = final_eval(best.params, jax.random.key(config.arch.seed + 1))
        logger.log_absolute(_episodes(final))
    finally:
        logger.close()
    final_summary = summarise(final)
    return {
        "algorithm": algo, "env_name": env.spec.env_name, "scenario": env.spec.scenario,
        "vault": dataset.path, "dataset_mode": dataset.mode, "dataset_bytes": dataset.nbytes,
        "dataset_return_mean": stats["dataset_return_mean"],
        "num_updates": stats["num_updates"], "updates_per_second": stats["updates_per_second"],
        "best_step": best.step, "best_eval_return": best.ret,
        "final_return_mean": final_summary["return_mean"],
        "final_return_std": final_summary["return_std"],
        "final_episodes": config.arch.final_eval_episodes, "run_dir": str(run_dir),
    }


def _train_loop(algorithm: Algorithm, dataset: OfflineDataset, evaluator: Any, config: Any,
                logger: Any, run_dir: Path) -> tuple[_Best, dict]:
    """Blocks of updates, each followed by an evaluation, a log line and checkpoints."""
    arch, total = config.arch, config.system.num_updates
    blocks = min(arch.num_evaluation, total)
    evaluate = evaluator(arch.num_eval_episodes)
    updater = _Updater(algorithm, dataset, arch.seed)
    key = jax.random.key(arch.seed)
    key, init_key = jax.random.split(key)
    state, best, done = algorithm.init(init_key), _Best(), 0
    timed = [0, 0.0]  # updates and seconds of the blocks after the first (no compilation)
    for block in range(blocks):
        num = total // blocks + (1 if block < total % blocks else 0)
        key, run_key, eval_key = jax.random.split(key, 3)
        start = time.perf_counter()
        state, metrics = updater.run(state, num, run_key)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - start
        if block > 0 or blocks == 1:
            timed = [timed[0] + num, timed[1] + elapsed]
        done += num
        params = algorithm.params(state)
        result = evaluate(params, eval_key)
        ret = float(np.mean(np.asarray(result.episode_return)))
        train = {k: float(v) for k, v in metrics.items()}
        logger.log(done, num / max(elapsed, 1e-9), _episodes(result), train)
        _checkpoint(config, run_dir, "last", params, done, ret)
        if best.offer(ret, done, params):
            _checkpoint(config, run_dir, "best", params, done, ret)
    returns = dataset.episode_returns()
    return best, {
        "num_updates": done,
        "updates_per_second": timed[0] / max(timed[1], 1e-9),
        "dataset_return_mean": float(returns.mean()) if returns.size else float("nan"),
    }
