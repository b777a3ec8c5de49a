"""The host loop of an IPPO/MAPPO run: learn, hand off trajectories, evaluate, log, checkpoint.

The learner call is compiled ahead of time, so the reported SPS exclude compilation. Evaluation
uses the parameters *after* the updates it is reported for.

>>> from marlvault import config
>>> from marlvault.online import ippo, run
>>> cfg = config.load(ippo.Config, "ippo", ["system.total_timesteps=1e5"])  # doctest: +SKIP
>>> result = run.train(cfg)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from marlvault.checkpoint import save_checkpoint
from marlvault.envs.registry import make_env
from marlvault.logging import RunInfo, RunLogger
from marlvault.online import anakin, ippo
from marlvault.online.evaluate import EvalMetrics, make_evaluator, summarise

TrajectoryHook = Callable[[ippo.Trajectory, int], None]
"""Called after each learner call with the ``[U, T, B, ...]`` rollouts and the call index."""


@dataclass(frozen=True)
class TrainResult:
    """Summary of a finished run."""

    algorithm: str
    env_steps: int
    """Environment steps taken (all envs)."""
    final_return_mean: float
    """Mean evaluation return of the final parameters."""
    final_return_std: float
    best_return_mean: float
    """Best mean evaluation return over the run."""
    wall_time: float
    """Seconds, compilation included."""
    compile_time: float
    """Seconds spent compiling the learner and the evaluator."""
    sps: float
    """Steady-state training SPS (learner calls only: no compilation, no evaluation)."""
    run_dir: Path
    checkpoint_dir: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    """One dict per evaluation: step, sps, return_mean/std, losses."""
    interrupted: bool = False
    """The run was stopped early by ``should_stop`` (e.g. Ctrl-C)."""


def algorithm_name(config: ippo.Config) -> str:
    return "mappo" if config.system.centralised_critic else "ippo"


def run_dir_for(config: ippo.Config) -> Path:
    """``<base_dir>/<run_name>`` (default name ``<algo>_<env>_<scenario>_seed<seed>``)."""
    name = config.logger.run_name or (
        f"{algorithm_name(config)}_{config.env.env_name}_{config.env.scenario}_"
        f"seed{config.arch.seed}"
    )
    return Path(config.logger.base_dir) / name


def make_policy(learner: ippo.Learner) -> Callable[[Any, jax.Array], jax.Array]:
    """``policy(actor_params, obs [..., N, O] raw) -> logits [..., N, A]``."""
    system = learner.config.system

    def policy(actor_params: Any, obs: jax.Array) -> jax.Array:
        return learner.nets.actor.apply(actor_params, ippo.actor_input(obs, system))

    return policy


def _episode_dict(m: EvalMetrics) -> dict[str, np.ndarray]:
    return {
        "episode_return": np.asarray(m.episode_return),
        "episode_length": np.asarray(m.episode_length),
        "win_rate": np.asarray(m.win, np.float64),
    }


def _train_dict(metrics: ippo.UpdateMetrics) -> dict[str, float]:
    out = {k: float(np.mean(v)) for k, v in metrics.loss._asdict().items()}
    ret = np.asarray(metrics.episode_return)
    out["train_return"] = float(np.nanmean(ret)) if np.isfinite(ret).any() else math.nan
    return out


def train(
    config: ippo.Config,
    *,
    on_trajectories: TrajectoryHook | None = None,
    mesh: jax.sharding.Mesh | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run IPPO/MAPPO for ``config.num_calls`` learner calls, evaluating after each.

    Args:
        config: the resolved config.
        on_trajectories: optional hook receiving each call's rollouts (enables
            ``return_trajectories``); it may block to apply back-pressure, and its time counts
            in the reported SPS.
        mesh: default all local devices.
        should_stop: polled after every learner call; when it returns True the run stops early
            (e.g. on Ctrl-C), saves the last checkpoint and skips the final evaluation.
    """
    start = time.perf_counter()
    mesh = anakin.make_mesh() if mesh is None else mesh
    learner = ippo.make_train(config, mesh=mesh, return_trajectories=on_trajectories is not None)
    evaluate = make_evaluator(
        make_env(config.env.env_name, config.env.scenario), make_policy(learner),
        config.arch.num_eval_episodes, mesh=mesh, greedy=config.arch.evaluation_greedy,
    )  # fmt: skip
    key, eval_key = jax.random.split(jax.random.PRNGKey(config.arch.seed))
    state = learner.init(key)
    learn = learner.learn.lower(state).compile()
    jax.block_until_ready(evaluate(state.params.actor, eval_key))
    compile_time = time.perf_counter() - start
    session = _Session(config, run_dir_for(config))
    try:
        for call in range(config.num_calls):
            t0 = time.perf_counter()
            state, metrics, traj = learn(state)
            jax.block_until_ready(metrics)
            if on_trajectories is not None:
                on_trajectories(traj, call)
            session.learn_time += time.perf_counter() - t0
            m = evaluate(state.params.actor, jax.random.fold_in(eval_key, call))
            session.after_eval(call, state.params, metrics, m, time.perf_counter() - t0)
            if should_stop is not None and should_stop():
                session.interrupted = True
                break
        absolute = None
        if not session.interrupted:
            absolute = evaluate(session.best_actor(state), jax.random.fold_in(eval_key, 10**6))
        session.finish(state.params, absolute)
    finally:
        session.logger.close()
    return session.result(time.perf_counter() - start, compile_time)


class _Session:
    """Mutable host-side bookkeeping of one run (logging, best tracking, checkpoints)."""

    def __init__(self, config: ippo.Config, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        lg = config.logger
        info = RunInfo(
            config.env.env_name, config.env.scenario, algorithm_name(config), config.arch.seed,
            config.num_calls * config.updates_per_call * config.steps_per_update,
        )  # fmt: skip
        self.logger = RunLogger(
            run_dir, info, console=lg.console, tensorboard=lg.tensorboard, json=lg.json
        )
        self.ckpt_dir = run_dir / "checkpoints" if lg.checkpoint else None
        self.learn_time = 0.0
        self.steps = 0
        self.best = -math.inf
        self.best_params: Any = None
        self.history: list[dict[str, float]] = []
        self.last_eval: dict[str, float] = {}
        self.interrupted = False

    def after_eval(self, call: int, params, metrics, m: EvalMetrics, dt: float) -> None:
        cfg = self.config
        steps_call = cfg.updates_per_call * cfg.steps_per_update
        self.steps += steps_call
        sps = steps_call / max(self.learn_time / (call + 1), 1e-9)
        summary = summarise(m)
        train = _train_dict(metrics)
        self.logger.log(self.steps, sps, _episode_dict(m), train)
        self.history.append({"step": self.steps, "sps": sps, **summary, **train})
        self.last_eval = summary
        if summary["return_mean"] > self.best:
            self.best = summary["return_mean"]
            self.best_params = jax.device_get(params)
            if self.ckpt_dir is not None:
                save_checkpoint(self.ckpt_dir, "best", params._asdict(), cfg, step=self.steps,
                                return_mean=self.best)  # fmt: skip

    def best_actor(self, state: ippo.LearnerState) -> Any:
        return state.params.actor if self.best_params is None else self.best_params.actor

    def finish(self, params: ippo.Params, absolute: EvalMetrics | None) -> None:
        if absolute is not None:
            self.logger.log_absolute(_episode_dict(absolute))
        if self.ckpt_dir is not None:
            save_checkpoint(self.ckpt_dir, "last", params._asdict(), self.config,
                            step=self.steps, return_mean=self.last_eval["return_mean"])  # fmt: skip

    def result(self, wall: float, compile_time: float) -> TrainResult:
        return TrainResult(
            algorithm=algorithm_name(self.config),
            env_steps=self.steps,
            final_return_mean=self.last_eval.get("return_mean", math.nan),
            final_return_std=self.last_eval.get("return_std", math.nan),
            best_return_mean=self.best,
            wall_time=wall,
            compile_time=compile_time,
            sps=self.steps / max(self.learn_time, 1e-9),
            run_dir=self.run_dir,
            checkpoint_dir=self.ckpt_dir,
            history=self.history,
            interrupted=self.interrupted,
        )
