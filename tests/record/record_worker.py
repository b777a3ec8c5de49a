"""Subprocess worker: a short IPPO run that records a vault and saves the learner's own rollouts.

Usage: python -m tests.record.record_worker VAULT_PATH NPZ_PATH [KEY=VALUE ...]
Runs on whatever devices the process sees (the 4-device test sets XLA_FLAGS).
"""

from __future__ import annotations

import sys

import jax
import numpy as np

from marlvault import config
from marlvault.online import ippo
from marlvault.record.session import TrainingRecorder

TINY = [
    "arch.num_envs=8", "system.rollout_length=16", "system.total_timesteps=1024",
    "arch.num_evaluation=2", "network.actor_hidden=16,16", "network.critic_hidden=16,16",
    "logger.console=false", "logger.tensorboard=false", "logger.json=false",
    "logger.checkpoint=false",
]  # fmt: skip


def run(vault_path: str, overrides: list[str]) -> dict[str, np.ndarray]:
    """Trains with recording; returns the learner's rollouts and metrics as numpy."""
    cfg = config.load(ippo.Config, "ippo", [*TINY, f"record.path={vault_path}", *overrides])
    learner = ippo.make_train(cfg, return_trajectories=True)
    hook = TrainingRecorder(cfg, learner.spec, cfg.updates_per_call)
    state = learner.init(jax.random.PRNGKey(cfg.arch.seed))
    trajs, metrics = [], []
    for call in range(cfg.num_calls):
        state, m, traj = learner.learn(state)
        trajs.append(jax.device_get(traj))
        metrics.append(jax.device_get(m))
        hook(traj, call)
    hook.close()
    cat = {f: np.concatenate([getattr(t, f) for t in trajs]) for f in trajs[0]._fields}
    cat["episodes"] = np.concatenate([m.episodes for m in metrics])
    cat["episode_return"] = np.concatenate([m.episode_return for m in metrics])
    cat["rollout_length"] = np.asarray(cfg.system.rollout_length)
    return cat


if __name__ == "__main__":
    out = run(sys.argv[1], sys.argv[3:])
    out["num_devices"] = np.asarray(jax.device_count())
    np.savez(sys.argv[2], **out)
