"""Independent DDPG with conservative Q-learning (IDDPG+CQL), continuous actions.

DDPG for every agent independently with the shared continuous actor–critic of
``actor_critic.py`` (recurrent tanh actor, twin feed-forward critics ``Q_k(o_i, a_i)``, Polyak
targets), the critics regularised by continuous CQL (Kumar et al. 2020, CQL(H) with the
importance-sampled log-sum-exp of its appendix F). In unit actions (``[-1, 1]^A``), per critic::

    y_t     = r_t + gamma (1 - terminal_t) min_k Q'_k(o_{t+1}, mu'(o_{t+1}))
    samples = M uniform actions in the box (density 2^-A)
              + M actions clip(mu(o_t) + sigma eps, -1, 1), eps ~ N(0, I) (Gaussian density)
    cql_k   = mean over (t, agent) in the episode of
              log (1/2M sum_m exp(Q_k(o_t, a_m)) / p(a_m)) - Q_k(o_t, a_t)
    critic  = sum_k [ mean over target_mask of (Q_k(o_t, a_t) - y_t)^2 + cql_weight cql_k ]
    actor   = - mean Q_1(o, mu(o))

``M = num_ood_actions``, ``sigma = cql_sigma``. A terminal stops the bootstrap, a truncation does
not, unknown next observations give no TD error.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from marlvault.config import MAX_PARALLEL, require_range
from marlvault.offline.actor_critic import (
    ActorCriticConfig,
    Parts,
    QFn,
    TrainState,
    actor_critic_algorithm,
    actor_q_loss,
    cql_regulariser,
    independent_features,
)
from marlvault.offline.common import Algorithm, AlgorithmEntry, DataNeeds
from marlvault.offline.dataset import DataSpec

Array = jax.Array


@dataclass(frozen=True)
class CQLConfig(ActorCriticConfig):
    """The continuous actor–critic's hyper-parameters plus continuous CQL's (OG-MARL's defaults
    for its CQL systems: learning rates 1e-3, tau 0.01, 10 + 10 sampled actions, weight 5,
    sigma 0.2)."""

    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the twin critics."""
    tau: float = 0.01
    """Polyak rate of the target actor and critics."""
    cql_weight: float = 5.0
    """Weight of the CQL regulariser (0: plain twin-critic DDPG)."""
    num_ood_actions: int = 10
    """M: uniform actions, and as many around the actor's action, in the log-sum-exp."""
    cql_sigma: float = 0.2
    """Std of the sampled actions around the actor's (unit actions)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "cql_weight", lo=0.0)
        require_range("system", self, "num_ood_actions", lo=1, hi=MAX_PARALLEL)
        require_range("system", self, "cql_sigma", lo=0.0, hi=10.0, lo_open=True)


def cql_parts(config: CQLConfig, features) -> Parts:
    """Continuous CQL on the critics and DDPG's actor loss, for ``features``' critic."""

    def regulariser(q_fn: QFn, q_data: Array, pi: Array, mask: Array, key: Array):
        return cql_regulariser(q_fn, q_data, pi, mask, key, config.num_ood_actions,
                               config.cql_sigma, config.cql_weight)

    def objective(pi: Array, q_fn: QFn, data: Array, mask: Array, key: Array):
        del data, key
        loss = actor_q_loss(q_fn(pi)[0], mask)
        return loss, {"actor_loss": loss}

    return Parts(features, regulariser, objective)


@dataclass(frozen=True)
class Config(CQLConfig):
    """Hyper-parameters of IDDPG+CQL."""


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps; continuous actions only; no global state."""
    return DataNeeds(config.seq_len, 0, False, continuous_ok=True, discrete_ok=False)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The IDDPG+CQL bundle the offline trainer runs."""
    return actor_critic_algorithm("iddpg-cql", config, spec,
                                  cql_parts(config, independent_features))


ENTRY = AlgorithmEntry("iddpg-cql", Config, data_needs, make_algorithm,
                       "Independent DDPG + continuous CQL, continuous actions.")

__all__ = ["ENTRY", "CQLConfig", "Config", "TrainState", "cql_parts", "data_needs",
           "make_algorithm"]
