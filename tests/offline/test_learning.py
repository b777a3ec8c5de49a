"""Slow learning checks on LBF 8x8-2p-2f-coop: BC imitates a good dataset; IQL+CQL beats BC on a
dataset that mixes a good and a poor policy.

The good policy is IPPO trained here (about 3e5 env steps), acting greedily with epsilon = 0.05;
the poor policy is uniform over legal actions. Evaluation uses the same epsilon (0.05): greedy
deterministic policies dead-lock in LBF (the greedy IPPO expert itself scores ~0.56 against ~0.89
with epsilon = 0.05), so epsilon-greedy evaluation is the like-for-like comparison with the data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlvault import config
from marlvault.checkpoint import load_policy
from marlvault.envs import add_agent_ids, make_env
from marlvault.networks import Actor
from marlvault.offline import rollouts
from marlvault.offline.train import train_offline

pytestmark = pytest.mark.slow
EPS = 0.05


def _expert(tmp_path, action_dim):
    from marlvault.online import ippo, run

    cfg = config.load(ippo.Config, "ippo", [
        "env=lbf", "scenario=8x8-2p-2f-coop", "system.total_timesteps=4e5", "arch.num_envs=64",
        "system.rollout_length=32", "system.lr=5e-4", "network.actor_hidden=64,64",
        "network.critic_hidden=64,64", "arch.num_evaluation=4", f"logger.base_dir={tmp_path}",
        "logger.run_name=ippo", "logger.tensorboard=false", "logger.console=false",
    ])
    run.train(cfg)
    cfg, params = load_policy(tmp_path / "ippo" / "checkpoints")
    return Actor(action_dim, tuple(cfg.network.actor_hidden)), params["actor"]


def _eps_greedy(actor, params, eps):
    def policy(key, obs, legal):
        k_rand, k_eps = jax.random.split(key)
        logits = actor.apply(params, add_agent_ids(obs))
        greedy = jnp.argmax(jnp.where(legal > 0, logits, -1e9), -1).astype(jnp.int32)
        rand = rollouts.random_policy(k_rand, obs, legal)
        return jnp.where(jax.random.uniform(k_eps, greedy.shape) < eps, rand, greedy)

    return policy


def test_bc_imitates_and_iql_cql_beats_bc_on_mixed_data(tmp_path):
    env = make_env("lbf", "8x8-2p-2f-coop")
    actor, params = _expert(tmp_path, env.spec.action_dim)
    good = rollouts.rollout(env, _eps_greedy(actor, params, EPS), 16, 300, jax.random.key(1))
    poor = rollouts.rollout(env, rollouts.random_policy, 8, 300, jax.random.key(2))
    mixed = jax.tree.map(lambda a, b: np.concatenate([a[:8], b]), good, poor)
    good_path = rollouts.write_vault(str(tmp_path / "good.vlt"), good, env)
    mixed_path = rollouts.write_vault(str(tmp_path / "mixed.vlt"), mixed, env)
    common = [f"arch.eval_epsilon={EPS}", "arch.num_evaluation=5", "arch.num_eval_episodes=32",
              "arch.final_eval_episodes=256", f"logger.base_dir={tmp_path / 'runs'}",
              "logger.tensorboard=false", "logger.console=false"]
    bc_good = train_offline("bc", [f"vault={good_path}", "system.num_updates=2000",
                                   "system.lr=1e-3", *common])
    bc_mixed = train_offline("bc", [f"vault={mixed_path}", "system.num_updates=2000",
                                    "system.lr=1e-3", *common])
    iql_mixed = train_offline("iql-cql", [f"vault={mixed_path}", "system.num_updates=3000",
                                          *common])
    figures = {name: (round(s["dataset_return_mean"], 3), round(s["final_return_mean"], 3))
               for name, s in (("bc/good", bc_good), ("bc/mixed", bc_mixed),
                               ("iql-cql/mixed", iql_mixed))}
    print("(dataset mean return, final eval return):", figures)
    assert bc_good["final_return_mean"] >= 0.8 * bc_good["dataset_return_mean"], figures
    assert iql_mixed["final_return_mean"] > bc_mixed["final_return_mean"], figures
