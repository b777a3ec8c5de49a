"""Tiny IPPO and recurrent IPPO configs shared by the online tests (and the multi-device worker)."""

from __future__ import annotations

import os

from marlvault import config
from marlvault.online import rec_ippo
from marlvault.online.ippo import Config

TINY = [
    "arch.num_envs=4",
    "arch.num_eval_episodes=4",
    "arch.num_evaluation=1",
    "system.rollout_length=8",
    "system.ppo_epochs=2",
    "system.num_minibatches=2",
    "system.total_timesteps=64",
    "network.actor_hidden=16",
    "network.critic_hidden=16",
]


def tiny_config(*overrides: str) -> Config:
    """A config small enough to compile and run in seconds (rware tiny-2ag by default)."""
    return config.load(Config, "ippo", [*TINY, *overrides])


REC_TINY = [
    *TINY,
    "env=matrax",  # the cheapest env to compile; 25-step episodes, all truncated
    "scenario=penalty-0-stateful",
    "system.rollout_length=20",  # 2 updates: steps 0..39, an episode boundary at 25
    "system.total_timesteps=160",
    "network.rnn_size=16",
    "network.post_hidden=16",
]
"""A recurrent run of 2 updates in one learner call (4 envs, 2 minibatches of 2 envs)."""


def tiny_rec_config(*overrides: str) -> rec_ippo.Config:
    """A recurrent config small enough to compile and run in seconds."""
    return config.load(rec_ippo.Config, "rec_ippo", [*REC_TINY, *overrides])


def forced_devices_env(count: int = 4) -> dict[str, str]:
    """Environment for a subprocess that sees ``count`` CPU devices."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env
