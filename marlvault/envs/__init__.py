"""Environments: the :class:`MarlEnv` protocol, jumanji and jaxmarl adapters, wrappers, ``VecEnv``.

Global state: RWARE, LBF, matrax and MPE have none, so ``TimeStep.state`` is the concatenation of
all agents' raw observations (``state_dim = num_agents * obs_dim``); SMAX and MABrax emit their
own (``marlvault.envs.jaxmarl_envs``).
"""

from marlvault.envs.base import EnvSpec, MarlEnv, TimeStep
from marlvault.envs.registry import env_scenarios, list_envs, make_env, scenario_info
from marlvault.envs.vec import EpisodeMetrics, VecEnv, VecState, VecStep
from marlvault.envs.wrappers import AgentIDWrapper, add_agent_ids

__all__ = [
    "AgentIDWrapper",
    "EnvSpec",
    "EpisodeMetrics",
    "MarlEnv",
    "TimeStep",
    "VecEnv",
    "VecState",
    "VecStep",
    "add_agent_ids",
    "env_scenarios",
    "list_envs",
    "make_env",
    "scenario_info",
]
