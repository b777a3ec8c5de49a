"""Run a tiny IPPO learner on all local devices and save the results (used in a subprocess).

Usage: python tests/online/multi_device_worker.py OUT.npz [--recurrent] [KEY=VALUE ...]

``--recurrent`` runs the tiny recurrent config instead (``helpers.tiny_rec_config``), initialised
with the key a ``marlvault train rec-ippo|rec-mappo`` run of that config uses, so its parameters
compare with that run's last checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from marlvault.envs.registry import make_env
from marlvault.online import ippo, rec_ippo
from marlvault.online.run import make_learner_evaluator

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config, tiny_rec_config  # noqa: E402


def run(out: str, overrides: list[str]) -> None:
    if overrides[:1] == ["--recurrent"]:
        cfg = tiny_rec_config(*overrides[1:])
        learner = rec_ippo.make_train(cfg, return_trajectories=True)
        key = jax.random.split(jax.random.PRNGKey(cfg.arch.seed))[0]  # as run.train does
    else:
        cfg = tiny_config(*overrides)
        learner = ippo.make_train(cfg, return_trajectories=True, updates_per_call=2)
        key = jax.random.PRNGKey(3)
    state, metrics, traj = learner.learn(learner.init(key))
    env = make_env(cfg.env.env_name, cfg.env.scenario)
    evaluate = make_learner_evaluator(learner, 8, greedy=True)
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
