"""Slow learning check of continuous BC on MPE simple spread (continuous), through the real
pipeline: IPPO is trained here (2e6 env steps), ``marlvault record`` rolls its best checkpoint
out greedily (the "good" dataset) and with epsilon = 1 (uniform actions in the box: the random
baseline), and BC trained on the good dataset is evaluated greedily in the environment.

The second check joins the good dataset and an equally large random one with ``vault combine``
("mixed") and trains BC and the continuous offline actor–critics (IDDPG+BC, IDDPG+CQL,
MADDPG+CQL, OMAR) on it: at least one of IDDPG+BC, MADDPG+CQL and OMAR must beat BC, each
measured from random as above.

Returns are negative, so "reaching 80 % of the dataset" is measured from the random policy:
``(bc - random) >= 0.8 * (data - random)``, i.e. BC recovers at least 80 % of the expert's
improvement over random behaviour.
"""

from __future__ import annotations

import pytest

from marlvault import config
from marlvault.offline.train import train_offline
from marlvault.record.rollout import RolloutConfig, record_policy
from marlvault.tools import combine

pytestmark = pytest.mark.slow
ENV = ["env=mpe", "scenario=simple_spread_v3-continuous"]


def _expert(tmp_path) -> str:
    from marlvault.online import ippo, run

    cfg = config.load(ippo.Config, "ippo", [
        *ENV, "arch.num_envs=16", "system.num_minibatches=4", "system.decay_lr=true",
        "system.total_timesteps=2e6", "arch.num_evaluation=4", f"logger.base_dir={tmp_path}",
        "logger.run_name=ippo", "logger.tensorboard=false", "logger.console=false",
    ])  # fmt: skip
    run.train(cfg)
    return str(tmp_path / "ippo" / "checkpoints" / "best")


def _record(ckpt: str, path: str, episodes: int, epsilon: float, seed: int):
    cfg = RolloutConfig(checkpoint=ckpt, episodes=episodes, epsilon=epsilon, path=path,
                        num_envs=16, seed=seed)  # fmt: skip
    result = record_policy(cfg)
    assert result.episodes == episodes
    return result


def test_continuous_bc_recovers_80_percent_of_the_expert_gain_over_random(tmp_path):
    ckpt = _expert(tmp_path)
    good = _record(ckpt, str(tmp_path / "good.vlt"), 320, 0.0, seed=1)
    random = _record(ckpt, str(tmp_path / "random.vlt"), 128, 1.0, seed=2).return_mean
    s = train_offline("bc", [f"vault={good.path}", "system.num_updates=3000", "system.lr=1e-3",
                             "arch.num_evaluation=5", "arch.num_eval_episodes=32",
                             "arch.final_eval_episodes=256", f"logger.base_dir={tmp_path / 'runs'}",
                             "logger.tensorboard=false", "logger.console=false"])  # fmt: skip
    data, ret = s["dataset_return_mean"], s["final_return_mean"]
    gain = (ret - random) / (data - random)
    figures = {"random": round(random, 3), "data": round(data, 3), "bc": round(ret, 3),
               "fraction_of_gain": round(gain, 3)}  # fmt: skip
    print("continuous BC on MPE simple spread:", figures)
    assert data > random, figures
    assert ret - random >= 0.8 * (data - random), figures


MIXED_ALGORITHMS = ("bc", "iddpg-bc", "iddpg-cql", "maddpg-cql", "omar")
MIXED_UPDATES = 3000


def mixed_figures(tmp_path, ckpt: str, updates: int = MIXED_UPDATES) -> dict:
    """Records good (320 episodes) and random (320) data, joins them into "mixed" and trains
    every algorithm of ``MIXED_ALGORITHMS`` on it; returns the figures."""
    good = _record(ckpt, str(tmp_path / "good.vlt"), 320, 0.0, seed=1)
    random = _record(ckpt, str(tmp_path / "random.vlt"), 320, 1.0, seed=2)
    mixed = str(tmp_path / "mixed.vlt")
    combine(mixed, [good.path, random.path])
    figures = {"good": round(good.return_mean, 3), "random": round(random.return_mean, 3)}
    for algo in MIXED_ALGORITHMS:
        extra = ["system.lr=1e-3"] if algo == "bc" else []
        s = train_offline(algo, [f"vault={mixed}", f"system.num_updates={updates}", *extra,
                                 "arch.num_evaluation=5", "arch.num_eval_episodes=32",
                                 "arch.final_eval_episodes=256",
                                 f"logger.base_dir={tmp_path / 'runs'}",
                                 "logger.tensorboard=false", "logger.console=false"])
        figures["mixed"] = round(s["dataset_return_mean"], 3)
        ret = s["final_return_mean"]
        gain = (ret - random.return_mean) / (good.return_mean - random.return_mean)
        figures[algo] = {"return": round(ret, 3), "fraction_of_gain": round(gain, 3),
                         "updates_per_second": round(s["updates_per_second"], 1)}
    return figures


def test_an_offline_actor_critic_beats_bc_on_mixed_continuous_data(tmp_path):
    figures = mixed_figures(tmp_path, _expert(tmp_path))
    print("continuous offline RL on mixed MPE simple spread:", figures)
    bc = figures["bc"]["return"]
    assert any(figures[a]["return"] > bc for a in ("iddpg-bc", "maddpg-cql", "omar")), figures
