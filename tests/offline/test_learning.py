"""Slow learning checks on LBF 8x8-2p-2f-coop, through the real dataset pipeline: BC, IQL+BCQ and
QMIX+BCQ reach the good dataset's return; IQL+CQL beats BC on a dataset that mixes a good and a
poor policy; every discrete algorithm is measured on that mixed dataset.

The datasets are made the way published ones are: IPPO is trained here (about 4e5 env steps,
checkpoints saved), then ``marlvault record`` rolls its best checkpoint out greedily with
epsilon = 0.05 (good) and with epsilon = 1 (poor: uniformly random legal actions); ``marlvault
vault combine`` joins half of each. Evaluation uses the same epsilon (0.05): greedy deterministic
policies dead-lock in LBF (the greedy IPPO expert itself scores ~0.56 against ~0.89 with
epsilon = 0.05), so epsilon-greedy evaluation is the like-for-like comparison with the data.
"""

from __future__ import annotations

import pytest

from marlvault import config
from marlvault.offline.train import train_offline
from marlvault.record.rollout import RolloutConfig, record_policy
from marlvault.tools import combine

pytestmark = pytest.mark.slow
EPS = 0.05


def _expert(tmp_path) -> str:
    from marlvault.online import ippo, run

    cfg = config.load(ippo.Config, "ippo", [
        "env=lbf", "scenario=8x8-2p-2f-coop", "system.total_timesteps=4e5", "arch.num_envs=64",
        "system.rollout_length=32", "system.lr=5e-4", "network.actor_hidden=64,64",
        "network.critic_hidden=64,64", "arch.num_evaluation=4", f"logger.base_dir={tmp_path}",
        "logger.run_name=ippo", "logger.tensorboard=false", "logger.console=false",
    ])  # fmt: skip
    run.train(cfg)
    return str(tmp_path / "ippo" / "checkpoints" / "best")


def _record(ckpt: str, path: str, episodes: int, epsilon: float, seed: int) -> str:
    cfg = RolloutConfig(checkpoint=ckpt, episodes=episodes, epsilon=epsilon, path=path,
                        num_envs=16, seed=seed)  # fmt: skip
    result = record_policy(cfg)
    assert result.episodes == episodes
    return result.path


def test_bc_imitates_and_iql_cql_beats_bc_on_mixed_data(tmp_path):
    ckpt = _expert(tmp_path)
    good = _record(ckpt, str(tmp_path / "good.vlt"), 320, EPS, seed=1)
    half = _record(ckpt, str(tmp_path / "half.vlt"), 160, EPS, seed=2)
    poor = _record(ckpt, str(tmp_path / "poor.vlt"), 160, 1.0, seed=3)
    mixed = str(tmp_path / "mixed.vlt")
    combine(mixed, [half, poor])
    common = [f"arch.eval_epsilon={EPS}", "arch.num_evaluation=5", "arch.num_eval_episodes=32",
              "arch.final_eval_episodes=256", f"logger.base_dir={tmp_path / 'runs'}",
              "logger.tensorboard=false", "logger.console=false"]  # fmt: skip
    bc_good = train_offline("bc", [f"vault={good}", "system.num_updates=2000",
                                   "system.lr=1e-3", *common])  # fmt: skip
    bc_mixed = train_offline("bc", [f"vault={mixed}", "system.num_updates=2000",
                                    "system.lr=1e-3", *common])  # fmt: skip
    iql_mixed = train_offline("iql-cql", [f"vault={mixed}", "system.num_updates=3000", *common])
    figures = {name: (round(s["dataset_return_mean"], 3), round(s["final_return_mean"], 3))
               for name, s in (("bc/good", bc_good), ("bc/mixed", bc_mixed),
                               ("iql-cql/mixed", iql_mixed))}  # fmt: skip
    print("(dataset mean return, final eval return):", figures)
    assert bc_good["final_return_mean"] >= 0.8 * bc_good["dataset_return_mean"], figures
    assert iql_mixed["final_return_mean"] > bc_mixed["final_return_mean"], figures


def test_bcq_reaches_the_good_datasets_return(tmp_path):
    """IQL+BCQ and QMIX+BCQ reach >= 80 % of the good dataset's mean return (same datasets and
    epsilon-greedy evaluation as above)."""
    ckpt = _expert(tmp_path)
    good = _record(ckpt, str(tmp_path / "good.vlt"), 320, EPS, seed=1)
    common = [f"arch.eval_epsilon={EPS}", "arch.num_evaluation=5", "arch.num_eval_episodes=32",
              "arch.final_eval_episodes=256", f"logger.base_dir={tmp_path / 'runs'}",
              "logger.tensorboard=false", "logger.console=false", "system.num_updates=3000"]
    results = {algo: train_offline(algo, [f"vault={good}", *common])
               for algo in ("iql-bcq", "qmix-bcq")}
    figures = {algo: (round(s["dataset_return_mean"], 3), round(s["final_return_mean"], 3))
               for algo, s in results.items()}  # fmt: skip
    print("(dataset mean return, final eval return):", figures)
    for s in results.values():
        assert s["final_return_mean"] >= 0.8 * s["dataset_return_mean"], figures


def test_every_discrete_algorithm_on_mixed_data(tmp_path):
    """Every discrete algorithm on the mixed dataset of the first test, side by side (one seed,
    256 evaluation episodes each); the best offline RL algorithm beats BC."""
    ckpt = _expert(tmp_path)
    half = _record(ckpt, str(tmp_path / "half.vlt"), 160, EPS, seed=2)
    poor = _record(ckpt, str(tmp_path / "poor.vlt"), 160, 1.0, seed=3)
    mixed = str(tmp_path / "mixed.vlt")
    combine(mixed, [half, poor])
    common = [f"vault={mixed}", f"arch.eval_epsilon={EPS}", "arch.num_evaluation=5",
              "arch.num_eval_episodes=32", "arch.final_eval_episodes=256",
              f"logger.base_dir={tmp_path / 'runs'}", "logger.tensorboard=false",
              "logger.console=false"]  # fmt: skip
    runs = {"bc": ["system.num_updates=2000", "system.lr=1e-3"],  # as in the first test
            "iql-cql": ["system.num_updates=3000"], "qmix-cql": ["system.num_updates=3000"],
            "iql-bcq": ["system.num_updates=3000"], "qmix-bcq": ["system.num_updates=3000"],
            "maicq": ["system.num_updates=3000", "system.beta=1.0"]}  # as in test_maicq.py
    results = {algo: train_offline(algo, [*common, *extra]) for algo, extra in runs.items()}
    print(f"\nmixed dataset mean return {results['bc']['dataset_return_mean']:.3f}")
    for algo, s in results.items():
        print(f"| {algo} | {s['final_return_mean']:.3f} ± {s['final_return_std']:.3f} | "
              f"{s['updates_per_second']:.0f} |")
    best = max((s["final_return_mean"], algo) for algo, s in results.items() if algo != "bc")
    assert best[0] > results["bc"]["final_return_mean"], best
