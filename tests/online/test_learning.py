"""Slow learning checks: IPPO and recurrent IPPO clearly beat a random policy within a CPU budget.

Run with ``pytest -m slow tests/online/test_learning.py``. Each test trains with the default
hyperparameters (rollout 128, 4 epochs, 2 minibatches, 32 envs; IPPO: MLP 128-128; recurrent
IPPO: MLP 128 -> GRU 128 -> MLP 128) and compares the final evaluation (parameters after the last
update, sampled actions, 32 episodes) with a uniformly random legal policy evaluated on the same
number of episodes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlvault import config
from marlvault.envs.registry import make_env
from marlvault.online import ippo, rec_ippo, run
from marlvault.online.evaluate import make_evaluator


def random_policy_return(env_name: str, scenario: str, episodes: int = 64) -> float:
    """Mean episode return of uniformly random legal actions (all-zero logits)."""
    env = make_env(env_name, scenario)
    policy = lambda params, obs: jnp.zeros((*obs.shape[:-1], env.spec.action_dim))  # noqa: E731
    evaluate = make_evaluator(env, policy, episodes, greedy=False)
    return float(np.mean(evaluate(None, jax.random.PRNGKey(123)).episode_return))


def _train(tmp_path, env_name: str, scenario: str, steps: str,
           recurrent: bool = False) -> run.TrainResult:
    cls, preset = (rec_ippo.Config, "rec_ippo") if recurrent else (ippo.Config, "ippo")
    cfg = config.load(cls, preset, [
        f"env={env_name}", f"scenario={scenario}", f"system.total_timesteps={steps}",
        "arch.num_evaluation=10", f"logger.base_dir={tmp_path}", "logger.console=false",
    ])  # fmt: skip
    return run.train(cfg)


@pytest.mark.slow
def test_ippo_learns_lbf(tmp_path):
    random_return = random_policy_return("lbf", "8x8-2p-2f-coop")
    result = _train(tmp_path, "lbf", "8x8-2p-2f-coop", "5e5")
    print(f"\nLBF 8x8-2p-2f-coop: random {random_return:.3f}, IPPO final "
          f"{result.final_return_mean:.3f} (best {result.best_return_mean:.3f}) after "
          f"{result.env_steps:,} steps, {result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert result.final_return_mean > max(3 * random_return, random_return + 0.2)


@pytest.mark.slow
def test_ippo_learns_rware_tiny_2ag(tmp_path):
    random_return = random_policy_return("rware", "tiny-2ag")
    result = _train(tmp_path, "rware", "tiny-2ag", "3e6")
    print(f"\nRWARE tiny-2ag: random {random_return:.3f}, IPPO final "
          f"{result.final_return_mean:.3f} (best {result.best_return_mean:.3f}) after "
          f"{result.env_steps:,} steps, {result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert result.final_return_mean > max(5 * random_return, random_return + 0.3)


@pytest.mark.slow
def test_rec_ippo_learns_lbf(tmp_path):
    random_return = random_policy_return("lbf", "8x8-2p-2f-coop")
    result = _train(tmp_path, "lbf", "8x8-2p-2f-coop", "5e5", recurrent=True)
    print(f"\nLBF 8x8-2p-2f-coop: random {random_return:.3f}, rec-IPPO final "
          f"{result.final_return_mean:.3f} (best {result.best_return_mean:.3f}) after "
          f"{result.env_steps:,} steps, {result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert result.final_return_mean > max(3 * random_return, random_return + 0.2)


@pytest.mark.slow
def test_rec_ippo_learns_rware_tiny_2ag(tmp_path):
    random_return = random_policy_return("rware", "tiny-2ag")
    result = _train(tmp_path, "rware", "tiny-2ag", "3e6", recurrent=True)
    print(f"\nRWARE tiny-2ag: random {random_return:.3f}, rec-IPPO final "
          f"{result.final_return_mean:.3f} (best {result.best_return_mean:.3f}) after "
          f"{result.env_steps:,} steps, {result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert result.final_return_mean > max(5 * random_return, random_return + 0.3)
