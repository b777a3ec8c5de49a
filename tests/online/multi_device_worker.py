"""Run a tiny IPPO learner on all local devices and save the results (used in a subprocess).

Usage: python tests/online/multi_device_worker.py OUT.npz [KEY=VALUE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from marlvault.envs.registry import make_env
from marlvault.online import ippo
from marlvault.online.evaluate import make_evaluator
from marlvault.online.run import make_policy

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config  # noqa: E402


def run(out: str, overrides: list[str]) -> None:
    cfg = tiny_config(*overrides)
    learner = ippo.make_train(cfg, return_trajectories=True, updates_per_call=2)
    state, metrics, traj = learner.learn(learner.init(jax.random.PRNGKey(3)))
    env = make_env(cfg.env.env_name, cfg.env.scenario)
    evaluate = make_evaluator(env, make_policy(learner), 8, greedy=True)
    m = evaluate(state.params.actor, jax.random.PRNGKey(0))
    leaves = jax.tree.leaves(jax.device_get(state.params))
    np.savez(
        out,
        devices=len(jax.devices()),
        actions=np.asarray(traj.action),
        obs=np.asarray(traj.obs),
        total_loss=np.asarray(metrics.loss.total_loss),
        eval_lengths=np.asarray(m.episode_length),
        time_limit=env.spec.time_limit,
        **{f"param_{i}": np.asarray(x) for i, x in enumerate(leaves)},
    )


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
