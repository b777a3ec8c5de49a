"""MADDPG with conservative Q-learning (MADDPG+CQL), continuous actions, global state.

MADDPG (Lowe et al. 2017): decentralised actors, a centralised critic per agent that sees the
global state and every agent's action, here with the shared continuous actor–critic of
``actor_critic.py`` (recurrent tanh actor shared by the agents, twin feed-forward critics shared
by the agents with a one-hot agent id, Polyak targets) and continuous CQL on the critics as in
IDDPG+CQL. In unit actions (``[-1, 1]^A``), for agent ``i``::

    Q_k^i(s, a_1 .. a_N) = Q_k([s, a_1 .. a_N, id_i])
    y_t^i   = r_t^i + gamma (1 - terminal_t) min_k Q'_k^i(s_{t+1}, mu'(o_{t+1}^1) .. mu'(o_{t+1}^N))
    critic  = sum_k [ mean over target_mask of (Q_k^i(s_t, a_t) - y_t^i)^2 + cql_weight cql_k ]
    actor   = - mean Q_1^i(s, a_1 .. mu(o^i) .. a_N)

where the CQL samples and the actor replace agent ``i``'s own action only and the other agents
keep their recorded actions (no gradient through them). The vault must hold ``infos.state``;
without it the dataset raises :class:`~marlvault.errors.DatasetError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from marlvault.offline.actor_critic import (
    TrainState,
    actor_critic_algorithm,
    centralised_features,
)
from marlvault.offline.common import Algorithm, AlgorithmEntry, DataNeeds
from marlvault.offline.dataset import DataSpec
from marlvault.offline.iddpg_cql import CQLConfig, cql_parts
from marlvault.offline.qmix_cql import require_state


@dataclass(frozen=True)
class Config(CQLConfig):
    """Hyper-parameters of MADDPG+CQL (IDDPG+CQL's)."""


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps with the global state; continuous actions
    only."""
    return DataNeeds(config.seq_len, 0, True, continuous_ok=True, discrete_ok=False)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The MADDPG+CQL bundle the offline trainer runs (acting uses the actor only)."""
    require_state(spec, "maddpg-cql", "iddpg-cql")
    return actor_critic_algorithm("maddpg-cql", config, spec,
                                  cql_parts(config, centralised_features))


ENTRY = AlgorithmEntry("maddpg-cql", Config, data_needs, make_algorithm,
                       "MADDPG (centralised critic on infos.state and all actions) + continuous "
                       "CQL; continuous actions.")

__all__ = ["ENTRY", "Config", "TrainState", "data_needs", "make_algorithm"]
