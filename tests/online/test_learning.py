"""Slow learning checks: IPPO and recurrent IPPO clearly beat a random policy within a CPU budget.

Run with ``pytest -m slow tests/online/test_learning.py -s``. The RWARE/LBF tests train with the
default hyperparameters (rollout 128, 4 epochs, 2 minibatches, 32 envs; IPPO: MLP 128-128;
recurrent IPPO: MLP 128 -> GRU 128 -> MLP 128); the MPE
tests with JaxMARL's IPPO settings for MPE (16 envs, rollout 128, 4 minibatches, lr 2.5e-4
decayed linearly). Each compares the final evaluation (parameters after the last update, sampled
actions) with a uniformly random policy (legal actions, or uniform in the action box) evaluated
the same way.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from marlvault import config
from marlvault.envs.registry import make_env
from marlvault.envs.vec import VecEnv
from marlvault.evaluation import first_episodes
from marlvault.networks import ActionSpace
from marlvault.online import ippo, rec_ippo, run

MPE_IPPO = ["arch.num_envs=16", "system.num_minibatches=4", "system.decay_lr=true"]
"""JaxMARL's IPPO settings for MPE (baselines/IPPO/config/ippo_ff_mpe.yaml) where ours differ."""


def random_policy_returns(env_name: str, scenario: str, episodes: int = 64) -> np.ndarray:
    """``[E]`` first-episode returns of a uniformly random policy (legal actions / the box)."""
    env = make_env(env_name, scenario)
    space, vec = ActionSpace.of(env.spec), VecEnv(env, episodes)

    def act(params, hidden, ts, pos, key):
        key, k = jax.random.split(key)
        return hidden, space.to_env(space.uniform_raw(k, ts.legal)), key

    metrics = jax.jit(lambda key: first_episodes(vec, act, None, None, key))(
        jax.random.PRNGKey(123)
    )
    return np.asarray(metrics.episode_return)


def random_policy_return(env_name: str, scenario: str, episodes: int = 64) -> float:
    """Mean of :func:`random_policy_returns`."""
    return float(np.mean(random_policy_returns(env_name, scenario, episodes)))


def interval95(values: np.ndarray) -> tuple[float, float]:
    """Normal-approximation 95 % interval of the mean."""
    half = 1.96 * float(np.std(values, ddof=1)) / np.sqrt(len(values))
    return round(float(np.mean(values)) - half, 2), round(float(np.mean(values)) + half, 2)


def _train(tmp_path, env_name: str, scenario: str, steps: str, *extra: str,
           recurrent: bool = False) -> run.TrainResult:
    cls, preset = (rec_ippo.Config, "rec_ippo") if recurrent else (ippo.Config, "ippo")
    cfg = config.load(cls, preset, [
        f"env={env_name}", f"scenario={scenario}", f"system.total_timesteps={steps}",
        "arch.num_evaluation=10", f"logger.base_dir={tmp_path}", "logger.console=false", *extra,
    ])  # fmt: skip
    return run.train(cfg)


def _final_interval(result: run.TrainResult, episodes: int = 32) -> tuple[float, float]:
    """95 % interval of the final evaluation's mean return (``arch.num_eval_episodes``)."""
    half = 1.96 * result.final_return_std / np.sqrt(episodes)
    return result.final_return_mean - half, result.final_return_mean + half


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
def test_ippo_learns_mpe_simple_spread(tmp_path):
    rand = random_policy_returns("mpe", "simple_spread_v3")
    result = _train(tmp_path, "mpe", "simple_spread_v3", "2e6", *MPE_IPPO)
    print(f"\nMPE simple_spread_v3: random {rand.mean():.2f} {interval95(rand)}, IPPO final "
          f"{result.final_return_mean:.2f} ± {result.final_return_std:.2f} (best "
          f"{result.best_return_mean:.2f}) after {result.env_steps:,} steps, "
          f"{result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert _final_interval(result)[0] > interval95(rand)[1]
    assert result.final_return_mean > rand.mean() + 0.5 * rand.std()


@pytest.mark.slow
def test_ippo_learns_mpe_simple_spread_continuous(tmp_path):
    rand = random_policy_returns("mpe", "simple_spread_v3-continuous")
    result = _train(tmp_path, "mpe", "simple_spread_v3-continuous", "2e6", *MPE_IPPO)
    print(f"\nMPE simple_spread_v3-continuous: random {rand.mean():.2f} {interval95(rand)}, "
          f"IPPO final {result.final_return_mean:.2f} ± {result.final_return_std:.2f} (best "
          f"{result.best_return_mean:.2f}) after {result.env_steps:,} steps, "
          f"{result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert _final_interval(result)[0] > interval95(rand)[1]  # non-overlapping 95 % intervals


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


SMAX_REC_IPPO = ["arch.num_envs=128", "system.num_minibatches=4", "system.lr=0.004",
                 "system.clip_eps=0.05", "system.max_grad_norm=0.25", "system.decay_lr=true"]
"""JaxMARL's recurrent IPPO settings for SMAX (baselines/IPPO/config/ippo_rnn_smax.yaml) where
ours differ; its env settings (see_enemy_actions, walls_cause_death, attack_mode closest) are
jaxmarl's defaults, which the adapter uses."""


@pytest.mark.slow
def test_rec_ippo_wins_smax_3m(tmp_path):
    result = _train(tmp_path, "smax", "3m", "3e6", *SMAX_REC_IPPO, recurrent=True)
    print(f"\nSMAX 3m: rec-IPPO final win rate {result.final_win_rate:.2f}, return "
          f"{result.final_return_mean:.3f} ± {result.final_return_std:.3f} after "
          f"{result.env_steps:,} steps, {result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert result.final_win_rate >= 0.8


MABRAX_IPPO = ["arch.num_envs=64", "system.rollout_length=300", "system.num_minibatches=4",
               "system.lr=1e-3", "system.ent_coef=2e-6", "system.vf_coef=4.5",
               "system.decay_lr=true"]
"""JaxMARL's IPPO settings for MaBrax (baselines/IPPO/config/ippo_ff_mabrax.yaml) where ours
differ."""


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["hopper_3x1", "ant_4x2"])
def test_ippo_learns_mabrax(tmp_path, scenario):
    pytest.importorskip("brax", reason="MaBrax needs the mabrax extra: pip install 'marlvault[mabrax]'")
    rand = random_policy_returns("mabrax", scenario)
    result = _train(tmp_path, "mabrax", scenario, "1e6", *MABRAX_IPPO)
    lo, hi = interval95(rand)
    print(f"\nMaBrax {scenario}: random {rand.mean():.1f} ({lo:.1f}, {hi:.1f}), IPPO final "
          f"{result.final_return_mean:.1f} ± {result.final_return_std:.1f} after "
          f"{result.env_steps:,} steps, {result.wall_time:.0f} s, {result.sps:,.0f} SPS")
    assert _final_interval(result)[0] > interval95(rand)[1]  # non-overlapping 95 % intervals
