"""Dataset generation from a saved policy: ``marlvault record CHECKPOINT ...``.

This is how published offline MARL datasets are made: train a policy to a target level, then roll it
out with a little exploration and record the episodes. Checkpoints saved during one training run
(best/last, or earlier ones) give Poor / Medium / Good datasets.

Rows are ``num_envs`` parallel environments, each a continuous stream; the rollout runs in jitted
chunks of ``chunk_steps`` steps and stops at the step where the ``episodes``-th episode completes,
so the vault holds exactly that many complete episodes unless several end on that very step (the
default ``num_envs`` divides ``episodes`` to make fixed-length episodes come out exact).
A recurrent policy (``rec-ippo``/``rec-mappo`` checkpoints) carries its hidden state from chunk to
chunk and resets it at every episode's first observation, as in training.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.config import (
    INT32_MAX,
    MAX_BATCH_STEPS,
    MAX_PARALLEL,
    SEED_MAX,
    require,
    require_range,
)
from marlvault.envs.base import EnvSpec, TimeStep
from marlvault.envs.registry import make_env
from marlvault.envs.vec import VecEnv, VecState
from marlvault.networks import ActionSpace
from marlvault.record.recorder import Recorder, RecordStats
from marlvault.record.session import run_metadata
from marlvault.schema import check_extras, example_batch, trajectory_to_batch

Array = jax.Array
MODES = ("greedy", "sampled")


@dataclass(frozen=True)
class RolloutConfig:
    """``marlvault record`` options."""

    checkpoint: str = ""
    """A checkpoint folder (``best``/``last``), a run's ``checkpoints`` folder or the run folder."""
    episodes: int = 100
    """Complete episodes to record."""
    path: str = ""
    """Output vault path or URL; default ``vaults/<env>/<scenario>.vlt/<checkpoint tag>-eps<ε>``."""
    env: str = ""
    """Environment; default the one the checkpoint was trained on."""
    scenario: str = ""
    """Scenario; default the one the checkpoint was trained on."""
    mode: str = "greedy"
    """``greedy`` (arg-max) or ``sampled`` (from the policy's distribution)."""
    epsilon: float = 0.0
    """Probability of a uniformly random *legal* action instead of the policy's."""
    num_envs: int = 0
    """Parallel environments (vault rows); 0 = the largest divisor of ``episodes`` <= 32."""
    chunk_steps: int = 128
    """Steps per jitted rollout chunk."""
    seed: int = 0
    """Seed of the rollout (environment resets, sampling, epsilon)."""
    extras: tuple[str, ...] = field(default_factory=tuple)
    """Extra keys, subset of ``log_prob``, ``next_obs`` (``update`` is always 0 here)."""

    def __post_init__(self) -> None:
        require("checkpoint", self.checkpoint, bool(self.checkpoint), "a checkpoint folder",
                "marlvault record results/<run>/checkpoints/best")
        require_range("", self, "episodes", lo=1, hi=INT32_MAX)
        require("mode", self.mode, self.mode in MODES, f"one of {MODES}", f"mode={MODES[0]}")
        require_range("", self, "epsilon", lo=0.0, hi=1.0)
        require_range("", self, "num_envs", lo=0, hi=MAX_PARALLEL)
        require_range("", self, "chunk_steps", lo=1, hi=MAX_PARALLEL)
        require_range("", self, "seed", lo=0, hi=SEED_MAX)
        require("chunk_steps", self.chunk_steps, self.rows * self.chunk_steps <= MAX_BATCH_STEPS,
                f"num_envs x chunk_steps <= {MAX_BATCH_STEPS} steps per chunk",
                f"chunk_steps={max(1, MAX_BATCH_STEPS // self.rows)}")

    @property
    def rows(self) -> int:
        if self.num_envs:
            return self.num_envs
        return max(d for d in range(1, min(32, self.episodes) + 1) if self.episodes % d == 0)


class _Chunk(NamedTuple):
    """One rollout chunk in the learner's trajectory layout, ``[1, T, B, ...]``."""

    obs: Array
    action: Array
    reward: Array
    terminated: Array
    truncated: Array
    legal: Array
    state: Array
    log_prob: Array
    step_count: Array
    final_obs: Array
    update: Array  # [1]


class RolloutResult(NamedTuple):
    path: str
    episodes: int
    """Complete episodes in the vault."""
    return_mean: float
    return_std: float
    stats: RecordStats


class SavedPolicy(NamedTuple):
    """A restored actor, one step at a time (recurrent or not).

    ``init_hidden(b)`` is the carry of ``b`` envs before their first step (``None`` for a
    feed-forward actor); ``step(params, hidden, obs [B, N, O] raw, first [B] bool) ->
    (hidden, out)`` gives the actor's output (logits ``[B, N, A]``, continuous:
    ``(mean, log_std)``), resetting a recurrent actor's hidden state where ``first`` marks an
    episode's first observation. ``params`` are the checkpoint's actor parameters; they are an
    argument of ``step`` (not baked into it), so one compiled rollout serves every checkpoint of
    a run.
    """

    init_hidden: Any
    step: Any
    params: Any


def make_actor(policy_config: Any, spec: EnvSpec, params: Any) -> SavedPolicy:
    """The saved IPPO/MAPPO actor (feed-forward or recurrent) of a checkpoint."""
    from marlvault.online import ippo, losses, rec_ippo

    actor_params = params["actor"] if isinstance(params, dict) and "actor" in params else params
    system = policy_config.system
    if isinstance(policy_config, rec_ippo.Config):
        nets = rec_ippo.make_networks(spec, policy_config)
        return SavedPolicy(
            lambda b: rec_ippo.initial_hidden(nets, (b, spec.num_agents)),
            rec_ippo.make_policy(nets, system),
            actor_params,
        )
    nets = ippo.make_networks(spec, policy_config)

    def step(p: Any, hidden: None, obs: Array, first: Array) -> tuple[None, Array]:
        return hidden, nets.actor.apply(p, losses.actor_input(obs, system))

    return SavedPolicy(lambda b: None, step, actor_params)


def make_chunk_fn(vec: VecEnv, actor: SavedPolicy, cfg: RolloutConfig):
    """Jitted ``chunk(params, vstate, ts, hidden, key) -> (vstate, ts, hidden, key, _Chunk)`` of
    ``cfg.chunk_steps`` steps (``params``: actor parameters of the actor's structure;
    ``hidden``: its carry, see :class:`SavedPolicy`)."""

    space = ActionSpace.of(vec.spec)

    def act(params: Any, hidden: Any, ts: TimeStep, key: Array) -> tuple[Any, Array, Array]:
        """Environment actions and their behaviour log-probabilities under the policy."""
        k_pol, k_eps, k_rand = jax.random.split(key, 3)
        hidden, out = actor.step(params, hidden, ts.obs, ts.step_count == 0)
        dist = space.distribution(out, ts.legal)
        raw = dist.mode() if cfg.mode == "greedy" else dist.sample(k_pol)
        explore = jax.random.uniform(k_eps, ts.legal.shape[:-1]) < cfg.epsilon  # [B, N]
        if space.continuous:
            explore = explore[..., None]
        raw = jnp.where(explore, space.uniform_raw(k_rand, ts.legal), raw)
        return hidden, dist.to_env(raw), dist.log_prob(raw)

    def step(params, carry, _):
        vstate, ts, hidden, key = carry
        key, k_act = jax.random.split(key)
        hidden, action, log_prob = act(params, hidden, ts, k_act)
        vstate, out = vec.step(vstate, action)
        nts = out.timestep
        row = (ts.obs, action, nts.reward, nts.terminated, nts.truncated, ts.legal, ts.state,
               log_prob, ts.step_count, out.final_obs)  # fmt: skip
        return (vstate, nts, hidden, key), row

    @jax.jit
    def chunk(params: Any, vstate: VecState, ts: TimeStep, hidden: Any, key: Array):
        (vstate, ts, hidden, key), rows = jax.lax.scan(
            functools.partial(step, params), (vstate, ts, hidden, key), None, cfg.chunk_steps
        )
        traj = _Chunk(*[x[None] for x in rows], update=jnp.zeros((1,), jnp.int32))
        return vstate, ts, hidden, key, traj

    return chunk


def _cut_index(done: np.ndarray, needed: int) -> int | None:
    """Index of the step (in ``done [T, B]``) at which ``needed`` episodes have completed."""
    cum = np.cumsum(done.sum(axis=1))
    hit = np.nonzero(cum >= needed)[0]
    return int(hit[0]) if hit.size else None


def rollout_returns(chunk: Any, vec: VecEnv, actor: SavedPolicy, params: Any, episodes: int,
                    key: Array) -> np.ndarray:
    """Team returns of the first ``episodes`` episodes a policy completes, without recording.

    Args:
        chunk: :func:`make_chunk_fn`'s function for ``vec`` and ``actor``'s structure.
        vec: the vectorised environment the chunk steps.
        actor: gives the initial carry.
        params: actor parameters (any checkpoint of the same structure; no recompilation).
        episodes: how many complete episodes to score.
        key: seeds the resets and the actions.

    Returns:
        ``[episodes]`` float64 returns (sum over steps of the mean over agents of the rewards, as
        in the vault's episode table), in the order the episodes end (by step, then by env).
    """
    k_reset, key = jax.random.split(key)
    vstate, ts = jax.jit(vec.reset)(k_reset)
    hidden = actor.init_hidden(vec.num_envs)
    running = np.zeros(vec.num_envs)
    found: list[np.ndarray] = []
    count = 0
    while count < episodes:
        vstate, ts, hidden, key, traj = chunk(params, vstate, ts, hidden, key)
        reward = np.asarray(traj.reward[0], np.float64).mean(axis=-1)  # [T, B]
        done = np.asarray(traj.terminated[0] | traj.truncated[0])  # [T, B]
        for t in range(reward.shape[0]):
            running += reward[t]
            ended = np.nonzero(done[t])[0]
            if ended.size:
                found.append(running[ended].copy())
                running[ended] = 0.0
                count += ended.size
    return np.concatenate(found)[:episodes]


def record_policy(cfg: RolloutConfig, *, progress=None) -> RolloutResult:
    """Rolls out a saved policy and records ``cfg.episodes`` complete episodes into a vault."""
    from marlvault.checkpoint import load_policy, read_meta

    policy_config, params = load_policy(cfg.checkpoint)
    env_name = cfg.env or policy_config.env.env_name
    scenario = cfg.scenario or policy_config.env.scenario
    env = make_env(env_name, scenario)
    extras = check_extras(tuple(cfg.extras))
    vec = VecEnv(env, cfg.rows)
    actor = make_actor(policy_config, env.spec, params)
    chunk = make_chunk_fn(vec, actor, cfg)
    path = cfg.path or default_path(cfg, env.spec, read_meta(cfg.checkpoint))
    meta = run_metadata(policy_config, env.spec, extras, source="marlvault record")
    meta["marlvault"]["rollout"] = {
        "checkpoint": str(cfg.checkpoint), "mode": cfg.mode, "epsilon": cfg.epsilon,
        "episodes": cfg.episodes, "num_envs": cfg.rows, "seed": cfg.seed,
    }  # fmt: skip
    recorder = Recorder.create(path, example_batch(env.spec, cfg.rows, extras), metadata=meta,
                               to_batch=lambda t: trajectory_to_batch(t, env.spec, extras))  # fmt: skip
    key, k_reset = jax.random.split(jax.random.PRNGKey(cfg.seed))
    vstate, ts = jax.jit(vec.reset)(k_reset)  # one program, not one per operation
    hidden = actor.init_hidden(cfg.rows)
    done_so_far = 0
    try:
        while done_so_far < cfg.episodes:
            vstate, ts, hidden, key, traj = chunk(actor.params, vstate, ts, hidden, key)
            done = np.asarray(traj.terminated[0] | traj.truncated[0])
            cut = _cut_index(done, cfg.episodes - done_so_far)
            if cut is not None:  # the last chunk: cut on the host (the recorder copies the rest)
                traj = jax.device_get(traj)
                traj = traj._replace(
                    **{f: getattr(traj, f)[:, : cut + 1] for f in _Chunk._fields if f != "update"}
                )
                done = done[: cut + 1]
            done_so_far += int(done.sum())
            recorder.add(traj)
            if progress is not None:
                progress(min(done_so_far, cfg.episodes), cfg.episodes)
    finally:
        stats = recorder.close()
    returns = _returns(path)
    return RolloutResult(path, len(returns), float(np.mean(returns)) if returns.size else math.nan,
                         float(np.std(returns)) if returns.size else math.nan, stats)  # fmt: skip


def _returns(path: str) -> np.ndarray:
    from marlvault.vault import Vault

    with Vault.open(path) as v:
        eps = v.episodes
    return np.asarray(eps["return"][eps["complete"]])


def default_path(cfg: RolloutConfig, spec: EnvSpec, ckpt_meta: dict) -> str:
    tag = ckpt_meta.get("tag", "policy")
    return f"vaults/{spec.env_name}/{spec.scenario}.vlt/{tag}-{cfg.mode}-eps{cfg.epsilon:g}"
