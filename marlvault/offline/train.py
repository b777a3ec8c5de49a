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
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from marlvault import config as cfg
from marlvault.distributed import DistConfig
from marlvault.errors import ConfigError, DatasetError
from marlvault.evaluation import summarise
from marlvault.logging import RunInfo
from marlvault.offline import (
    bc,
    iddpg_bc,
    iddpg_cql,
    iql_bcq,
    iql_cql,
    maddpg_cql,
    maicq,
    omar,
    parallel,
    qmix_bcq,
    qmix_cql,
)
from marlvault.offline.common import Algorithm, AlgorithmEntry, make_scan_train
from marlvault.offline.dataset import MODES, OfflineDataset
from marlvault.offline.evaluate import make_evaluator
from marlvault.run import LoggerConfig, RunSession

ALGORITHMS: dict[str, AlgorithmEntry] = {
    e.name: e for e in (
        bc.ENTRY, iql_cql.ENTRY, qmix_cql.ENTRY, iql_bcq.ENTRY, qmix_bcq.ENTRY, maicq.ENTRY,
        iddpg_bc.ENTRY, iddpg_cql.ENTRY, maddpg_cql.ENTRY, omar.ENTRY,
    )
}
"""The registry: a new algorithm is one module ending in ``ENTRY = AlgorithmEntry(...)``, listed
here."""


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

    def __post_init__(self) -> None:
        cfg.require("data.mode", self.mode, self.mode in MODES, f"one of {MODES}", "data.mode=auto")
        cfg.require_range("data", self, "memory_budget_mb", lo=0, hi=MAX_MEMORY_MB)
        cfg.require_range("data", self, "shuffle_windows", lo=1, hi=cfg.MAX_PARALLEL)
        cfg.require_range("data", self, "steps_per_chunk", lo=0, hi=cfg.MAX_PARALLEL)


MAX_MEMORY_MB = 2**24
"""Largest ``data.memory_budget_mb`` (16 TiB: more than any device holds)."""


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
    """Evaluation: the best action (``false``: sample: BC's and MAICQ's own distribution,
    Boltzmann over Q-values for the Q-learners, Gaussian noise for the continuous
    actor-critics)."""

    def __post_init__(self) -> None:
        cfg.require_range("arch", self, "num_evaluation", "num_eval_episodes",
                          "final_eval_episodes", lo=1, hi=cfg.MAX_PARALLEL)
        cfg.require_range("arch", self, "eval_epsilon", lo=0.0, hi=1.0)
        cfg.require_range("arch", self, "seed", lo=0, hi=cfg.SEED_MAX - 1)  # seed + 1 is used


def _logger_default() -> LoggerConfig:
    return LoggerConfig(base_dir="results/offline")


@dataclass(frozen=True)
class OfflineRunConfig:
    """``marlvault offline train ALGO``: the sections every offline run shares.

    ``system`` is the algorithm's own ``Config``; :func:`run_config_class` gives each algorithm
    its concrete run config (this class with ``system`` typed), e.g. ``BCRunConfig``.
    """

    env: OfflineEnvConfig = field(default_factory=OfflineEnvConfig)
    """Evaluation environment (default: the vault's)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which vault, and how it is read."""
    arch: OfflineArchConfig = field(default_factory=OfflineArchConfig)
    """Seed and evaluation cadence."""
    logger: LoggerConfig = field(default_factory=_logger_default)
    """Run folder, sinks and checkpoints."""
    dist: DistConfig = field(default_factory=DistConfig)
    """Several processes (``marlvault launch``, a cluster launcher): each reads its devices'
    shares of the vault and gradients are averaged over all devices (see docs/OFFLINE.md)."""
    system: Any = None
    """The algorithm's hyper-parameters (its module's ``Config``)."""


@functools.cache
def run_config_class(algo: str) -> type:
    """The run config of ``algo``: :class:`OfflineRunConfig` with ``system: <module>.Config``.

    Named ``<ALGO>RunConfig`` (``BCRunConfig``, ``IQLCQLRunConfig``, ``QMIXCQLRunConfig``) and
    importable from this module, so checkpoints restore it.
    """
    entry = _entry(algo)
    name = entry.name.upper().replace("-", "") + "RunConfig"
    cls = dataclasses.make_dataclass(
        name, [("system", entry.config, field(default_factory=entry.config))],
        bases=(OfflineRunConfig,), frozen=True,
        namespace={"__doc__": f"``marlvault offline train {entry.name}``."},
    )  # fmt: skip
    cls.__module__ = __name__
    globals()[name] = cls
    return cls


def __getattr__(name: str) -> type:
    """``BCRunConfig`` & co. on first access (checkpoints name them)."""
    for algo in ALGORITHMS:
        if algo.upper().replace("-", "") + "RunConfig" == name:
            return run_config_class(algo)
    raise AttributeError(name)


def _entry(algo: str) -> AlgorithmEntry:
    if algo not in ALGORITHMS:
        raise ConfigError(
            f"offline algorithm {algo!r}: expected one of {sorted(ALGORITHMS)}; fix: e.g. "
            "`marlvault offline train bc vault=PATH`"
        )
    return ALGORITHMS[algo]


def load_config(algo: str, overrides: Sequence[str] = ()) -> Any:
    """Resolve the run config of ``algo`` from ``key=value`` overrides (``vault=`` included)."""
    items = [f"data.vault={a.partition('=')[2]}" if a.startswith("vault=") else a
             for a in overrides]
    return cfg.load(run_config_class(algo), None, items)


def open_dataset(algo: str, config: Any) -> OfflineDataset:
    """The vault of ``config.data`` opened for ``algo``'s windows (its ``spec`` carries the
    observation statistics when the algorithm needs them, ``DataNeeds.obs_stats``)."""
    if not config.data.vault:
        raise ConfigError(
            "data.vault: expected the path or URL of a vault, found none; fix: pass vault=PATH"
        )
    needs = _entry(algo).data_needs(config.system)
    dataset = OfflineDataset(config.data.vault, needs.dataset_config(
        add_agent_ids=config.data.add_agent_ids,
        mode=config.data.mode,
        memory_budget_bytes=config.data.memory_budget_mb * 1024**2,
        shuffle_windows=config.data.shuffle_windows,
        steps_per_chunk=config.data.steps_per_chunk,
        algorithm=algo,
    ))
    if not needs.discrete_ok and not dataset.spec.continuous:
        raise DatasetError(
            f"{dataset.path}: {algo} learns from continuous actions (B, T, N, A) float32, found "
            f"discrete actions (B, T, N) ({dataset.spec.action_dim} choices); fix: train a "
            f"discrete-action algorithm on this vault ({', '.join(discrete_algorithms())})"
        )
    if needs.obs_stats:  # one pass over the vault's observations (the whole vault on every process)
        dataset.spec = dataclasses.replace(dataset.spec, obs_stats=dataset.obs_stats())
    return dataset


def discrete_algorithms() -> list[str]:
    """Names of the registered algorithms that learn from discrete actions."""
    return [name for name, e in ALGORITHMS.items() if e.data_needs(e.config()).discrete_ok]


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
    if spec.continuous != ds.continuous or (ds.continuous and not ds.bounds_assumed and (
            spec.action_low, spec.action_high) != (ds.action_low, ds.action_high)):
        kind = lambda c, lo, hi: f"continuous in [{lo}, {hi}]" if c else "discrete"  # noqa: E731
        raise DatasetError(
            f"{dataset.path}: expected env {name}/{scenario} to take the vault's actions ("
            f"{kind(ds.continuous, ds.action_low, ds.action_high)}), found "
            f"{kind(spec.continuous, spec.action_low, spec.action_high)}; fix: pass the env and "
            "scenario the vault was recorded in"
        )
    if found != (ds.num_agents, ds.obs_dim, ds.action_dim):
        raise DatasetError(
            f"{dataset.path}: expected env {name}/{scenario} to match the vault's (agents, obs, "
            f"actions) = {(ds.num_agents, ds.obs_dim, ds.action_dim)}, found {found}; fix: pass "
            "the env and scenario the vault was recorded in"
        )
    return env


def describe_actions(spec: Any) -> str:
    """The dataset's action space in words (for the run summary)."""
    if not spec.continuous:
        return f"discrete ({spec.action_dim})"
    note = " (assumed: the vault's metadata gives no action_space)" if spec.bounds_assumed else ""
    return f"continuous ({spec.action_dim}) in [{spec.action_low:g}, {spec.action_high:g}]{note}"


class _ParallelUpdater:
    """:class:`_Updater` over every device of the run (:mod:`marlvault.offline.parallel`)."""

    def __init__(self, algo: Algorithm, dataset: OfflineDataset, seed: int, mesh: Any) -> None:
        self.algo, self.dataset, self.mesh = algo, dataset, mesh
        self.shares = parallel.local_shares(mesh)
        k = parallel.local_batch_size(algo.batch_size, mesh)
        parts = [OfflineDataset(dataset.path, dataset.config, share=(i, mesh.size))
                 for i in self.shares]  # fmt: skip
        for part in parts:
            part.mode = dataset.mode  # as decided for the whole vault
        if dataset.mode == "memory":
            self.sharded = parallel.ShardedData(parts, mesh)
            self.compiled: dict[int, Any] = {}
        else:
            self.batches = parallel.stream_parts(parts, k, seed, self.shares)
            self.update = parallel.make_sharded_update(algo, mesh)

    def init(self, key: jax.Array) -> Any:
        return jax.jit(self.algo.init, out_shardings=parallel.replicated(self.mesh))(key)

    def run(self, state: Any, num: int, key: jax.Array) -> tuple[Any, dict]:
        if self.dataset.mode == "memory":
            if num not in self.compiled:
                self.compiled[num] = parallel.make_sharded_scan(
                    self.algo, self.dataset.spec, self.dataset.config.seq_len, self.mesh, num)
            data = self.sharded
            state, metrics = self.compiled[num](state, data.data, data.counts, key)
            return state, parallel.to_local(metrics)
        metrics = []
        for _ in range(num):
            batch = parallel.global_batch(next(self.batches), self.mesh)
            state, m = self.update(state, batch)
            metrics.append(parallel.to_local(m))
        return state, jax.tree.map(lambda *xs: np.mean(np.stack(xs)), *metrics)


class _Updater:
    """Runs blocks of updates in either dataset mode; ``run(state, n, key) -> (state, metrics)``.

    Streaming hands the update groups of ``GROUP`` host batches, stacked on the host, in one
    jitted ``lax.scan`` (the same updates in the same order; a remainder runs one batch per
    call). Each call's XLA scratch memory is allocated afresh; above glibc's ``mmap`` threshold
    (the continuous CQL learners: ~140 MiB) that means page faults on every call, ~1.5x the CPU
    of the same update in a scan, and each call pays its own dispatch: a group pays both once.
    Grouping was taken out twice after runs that waited forever with idle CPUs; the cause was
    the actor-critics' init (a batched QR deadlocking XLA's CPU pool, fixed in
    ``actor_critic.make_init``), not the grouping (docs/BENCHMARKS.md, offline throughput).
    """

    GROUP = 10
    """Host batches per jitted call in streaming mode."""

    def __init__(self, algo: Algorithm, dataset: OfflineDataset, seed: int) -> None:
        self.algo, self.dataset = algo, dataset
        if dataset.mode == "memory":
            self.data = dataset.device_data()
            self.sample = dataset.sampler(algo.batch_size)
            self.compiled: dict[int, Any] = {}
        else:
            self.stream = dataset.stream(algo.batch_size, seed)
            self.update = jax.jit(algo.update)
            self.update_group = jax.jit(lambda state, group: jax.lax.scan(algo.update, state,
                                                                          group))

    def init(self, key: jax.Array) -> Any:
        return jax.jit(self.algo.init)(key)

    def run(self, state: Any, num: int, key: jax.Array) -> tuple[Any, dict]:
        if self.dataset.mode == "memory":
            if num not in self.compiled:
                self.compiled[num] = jax.jit(make_scan_train(self.algo, self.sample, num))
            return self.compiled[num](state, self.data, key)
        metrics = []  # each [k] (k updates) for one call
        for _ in range(num // self.GROUP):
            state, m = self.update_group(state, self.stream.group(self.GROUP))
            metrics.append(m)
        for _ in range(num % self.GROUP):
            state, m = self.update(state, self.stream.batch())
            metrics.append(jax.tree.map(lambda x: x[None], m))
        return state, jax.tree.map(lambda *xs: np.mean(np.concatenate(xs)), *metrics)


def train_offline(algo: str, config: Any = (), *,
                  should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train ``algo`` (a key of :data:`ALGORITHMS`) offline and evaluate it online.

    Args:
        algo: the algorithm name.
        config: its run config (:func:`run_config_class`) or a list of ``key=value`` overrides.
        should_stop: polled after every block (its evaluation and checkpoints done); when it
            returns True the run stops early (e.g. on Ctrl-C) and skips the final evaluation.

    Returns:
        a summary: algorithm, env, scenario, vault, dataset mode and size, its actions in words, dataset mean episode
        return, updates and updates/s (blocks after the first, so without compilation), best
        evaluation step and return, final evaluation (``final_return_mean``/``std`` over
        ``arch.final_eval_episodes``; NaN over 0 episodes when interrupted), ``interrupted``,
        run folder.
    """
    if not dataclasses.is_dataclass(config):
        config = load_config(algo, list(config))
    dataset = open_dataset(algo, config)
    env = resolve_env(config, dataset)
    algorithm = _entry(algo).make(config.system, dataset.spec)
    info = RunInfo(env.spec.env_name, env.spec.scenario, algo, config.arch.seed,
                   config.system.num_updates, env.spec.has_win)
    evaluators: dict[int, Any] = {}

    def evaluator(num_episodes: int) -> Any:
        if num_episodes not in evaluators:  # one compilation per episode count
            evaluators[num_episodes] = make_evaluator(
                env, algorithm, num_episodes, dataset.spec.add_agent_ids, config.arch.eval_epsilon,
                config.arch.eval_greedy)
        return evaluators[num_episodes]

    with RunSession(info, config.logger, config) as session:
        stats = _train_loop(algorithm, dataset, evaluator(config.arch.num_eval_episodes), config,
                            session, should_stop or (lambda: False))
        final_episodes, summary = 0, {"return_mean": math.nan, "return_std": math.nan}
        if not stats["interrupted"]:
            final_episodes = config.arch.final_eval_episodes
            final = evaluator(final_episodes)(session.best.params,
                                              jax.random.key(config.arch.seed + 1))
            session.log_absolute(final)
            summary = summarise(final)
    return {
        "algorithm": algo, "env_name": env.spec.env_name, "scenario": env.spec.scenario,
        "vault": dataset.path, "dataset_mode": dataset.mode, "dataset_bytes": dataset.nbytes,
        "actions": describe_actions(dataset.spec),
        **stats, "best_step": session.best.step, "best_eval_return": session.best.ret,
        "final_return_mean": summary["return_mean"], "final_return_std": summary["return_std"],
        "final_episodes": final_episodes, "run_dir": str(session.run_dir),
    }


def _train_loop(algorithm: Algorithm, dataset: OfflineDataset, evaluate: Any, config: Any,
                session: RunSession, should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Blocks of updates, each followed by an evaluation handed to the run session; stops after
    the block during which ``should_stop()`` became true."""
    arch, total = config.arch, config.system.num_updates
    blocks = min(arch.num_evaluation, total)
    mesh = parallel.make_mesh()
    updater = (_Updater(algorithm, dataset, arch.seed) if mesh.size == 1 else
               _ParallelUpdater(algorithm, dataset, arch.seed, mesh))  # fmt: skip
    key = jax.random.key(arch.seed)
    key, init_key = jax.random.split(key)
    state, done = updater.init(init_key), 0
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
        params = parallel.to_local(algorithm.params(state))
        train = {k: float(v) for k, v in metrics.items()}
        session.evaluated(done, num / max(elapsed, 1e-9), evaluate(params, eval_key), train,
                          params)
        if should_stop():
            break
    returns = dataset.episode_returns()
    return {
        "num_updates": done,
        "interrupted": done < total,
        "updates_per_second": timed[0] / max(timed[1], 1e-9),
        "dataset_return_mean": float(returns.mean()) if returns.size else float("nan"),
    }
