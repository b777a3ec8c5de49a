"""The host loop of an IPPO/MAPPO run (feed-forward or recurrent): learn, hand off trajectories,
evaluate.

The learner is picked by the config's class (:class:`marlvault.online.rec_ippo.Config` for the
recurrent systems); both have the same interface, so the loop, the recorder hook and the
checkpoints are one code path.

Logging, the run folder, best tracking and checkpoints are the shared run skeleton's
(:class:`marlvault.run.RunSession`). The learner call is compiled ahead of time, so the reported
SPS exclude compilation. Evaluation uses the parameters *after* the updates it is reported for.

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

from marlvault.envs.registry import make_env
from marlvault.logging import RunInfo
from marlvault.online import anakin, ippo, losses, rec_ippo
from marlvault.online.anakin import REPLICATED
from marlvault.online.evaluate import make_evaluator
from marlvault.run import RunSession

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
    final_win_rate: float = math.nan
    """Win rate of the final evaluation (NaN where the environment has no wins)."""


def is_recurrent(config: ippo.Config) -> bool:
    """The config is a recurrent system's (rec-ippo / rec-mappo)."""
    return isinstance(config, rec_ippo.Config)


def algorithm_name(config: ippo.Config) -> str:
    name = "mappo" if config.system.centralised_critic else "ippo"
    return f"rec-{name}" if is_recurrent(config) else name


def make_learner(config: ippo.Config, **kwargs: Any) -> ippo.Learner:
    """:func:`ippo.make_train` or, for a recurrent config, :func:`rec_ippo.make_train`."""
    make = rec_ippo.make_train if is_recurrent(config) else ippo.make_train
    return make(config, **kwargs)


def run_info(config: ippo.Config, has_win: bool = False) -> RunInfo:
    """The run's identity (folder name, marl-eval keys, progress-bar total, win column)."""
    return RunInfo(
        config.env.env_name, config.env.scenario, algorithm_name(config), config.arch.seed,
        config.num_calls * config.updates_per_call * config.steps_per_update, has_win,
    )  # fmt: skip


def make_policy(learner: ippo.Learner) -> Callable[..., Any]:
    """``policy(actor_params, obs [..., N, O] raw) -> logits [..., N, A]``; for a recurrent
    learner ``policy(actor_params, hidden, obs [E, N, O], first [E]) -> (hidden, logits)``
    (see :func:`policy_hidden`)."""
    system = learner.config.system
    if is_recurrent(learner.config):
        return rec_ippo.make_policy(learner.nets, system)

    def policy(actor_params: Any, obs: jax.Array) -> jax.Array:
        return learner.nets.actor.apply(actor_params, losses.actor_input(obs, system))

    return policy


def policy_hidden(learner: ippo.Learner) -> Callable[[int], Any] | None:
    """``init_hidden(e)`` of the learner's policy for :func:`make_evaluator` (``None`` for a
    feed-forward policy)."""
    if not is_recurrent(learner.config):
        return None
    n = learner.spec.num_agents
    return lambda e: rec_ippo.initial_hidden(learner.nets, (e, n))


def make_learner_evaluator(learner: ippo.Learner, num_episodes: int, *,
                           mesh: jax.sharding.Mesh | None = None, greedy: bool = True):
    """:func:`make_evaluator` for the learner's policy, recurrent or not."""
    config = learner.config
    return make_evaluator(
        make_env(config.env.env_name, config.env.scenario), make_policy(learner), num_episodes,
        mesh=mesh, greedy=greedy, init_hidden=policy_hidden(learner),
    )  # fmt: skip


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
    """Run (recurrent) IPPO/MAPPO for ``config.num_calls`` learner calls, evaluating after each.

    Args:
        config: the resolved config.
        on_trajectories: optional hook receiving each call's rollouts (enables
            ``return_trajectories``); it may block to apply back-pressure, and its time counts
            in the reported SPS.
        mesh: default all devices (every process's in a multi-process run).
        should_stop: polled after every learner call; when it returns True the run stops early
            (e.g. on Ctrl-C), saves the last checkpoint and skips the final evaluation.
    """
    start = time.perf_counter()
    mesh = anakin.make_mesh() if mesh is None else mesh
    learner = make_learner(config, mesh=mesh, return_trajectories=on_trajectories is not None)
    evaluate = make_learner_evaluator(learner, config.arch.num_eval_episodes, mesh=mesh,
                                      greedy=config.arch.evaluation_greedy)  # fmt: skip
    key, eval_key = jax.random.split(jax.random.PRNGKey(config.arch.seed))
    state = learner.init(key)
    learn = learner.learn.lower(state).compile()
    jax.block_until_ready(evaluate(state.params.actor, eval_key))
    compile_time = time.perf_counter() - start
    steps_call = config.updates_per_call * config.steps_per_update
    learn_time, interrupted = 0.0, False
    with RunSession(run_info(config, learner.spec.has_win), config.logger, config) as session:
        for call in range(config.num_calls):
            t0 = time.perf_counter()
            state, metrics, traj = learn(state)
            jax.block_until_ready(metrics)
            if on_trajectories is not None:
                on_trajectories(traj, call)
            learn_time += time.perf_counter() - t0
            m = anakin.to_host(evaluate(state.params.actor, jax.random.fold_in(eval_key, call)))
            sps = steps_call / max(learn_time / (call + 1), 1e-9)
            session.evaluated((call + 1) * steps_call, sps, m, _train_dict(metrics), state.params,
                              state.params._asdict())  # fmt: skip
            if should_stop is not None and should_stop():
                interrupted = True
                break
        if not interrupted:
            # the host copy goes back on the mesh as the learner's parameters are, so the final
            # evaluation reuses the evaluator compiled above instead of compiling it again
            best = anakin.put(session.best.params.actor, mesh, REPLICATED)
            session.log_absolute(anakin.to_host(evaluate(best, jax.random.fold_in(eval_key, 10**6))))
    return _result(config, session, time.perf_counter() - start, compile_time, learn_time,
                   interrupted, learner.spec.has_win)


def _result(config: ippo.Config, session: RunSession, wall: float, compile_time: float,
            learn_time: float, interrupted: bool, has_win: bool = False) -> TrainResult:
    steps = len(session.history) * config.updates_per_call * config.steps_per_update
    return TrainResult(
        algorithm=algorithm_name(config),
        env_steps=steps,
        final_return_mean=session.last_eval.get("return_mean", math.nan),
        final_return_std=session.last_eval.get("return_std", math.nan),
        final_win_rate=session.last_eval.get("win_rate", math.nan) if has_win else math.nan,
        best_return_mean=session.best.ret,
        wall_time=wall,
        compile_time=compile_time,
        sps=steps / max(learn_time, 1e-9),
        run_dir=session.run_dir,
        checkpoint_dir=session.checkpoint_dir,
        history=session.history,
        interrupted=interrupted,
    )
