"""Independent Q-learning with conservative Q-learning (IQL+CQL), recurrent, discrete actions.

One GRU Q-network shared by all agents (agent ids in the input) learns each agent's Q from its
own reward. Windows never cross an episode boundary (``offline/dataset.py``); position ``i + 1``
of a window is step ``i``'s next observation. For every step ``t`` of the window::

    a*_{t+1} = argmax_{legal a} Q_online(o_{t+1}, a)                 (double Q)
    y_t      = r_t + gamma * (1 - terminal_t) * Q_target(o_{t+1}, a*_{t+1})
    td       = mean over (t, agent) with target_mask_t of (Q(o_t, a_t) - y_t)^2
    cql      = mean over (t, agent) in the episode of logsumexp_{legal a} Q(o_t, a) - Q(o_t, a_t)
    loss     = td + cql_weight * cql

A terminal stops the bootstrap, a truncation does not, and a step whose next observation is unknown
(``target_mask == 0``) gives no TD error. The target network follows the online one by Polyak
averaging. Illegal actions are excluded from the arg-max, from the CQL log-sum-exp and from acting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from marlvault.config import require_range
from marlvault.offline.common import (
    Algorithm,
    AlgorithmEntry,
    DataNeeds,
    init_gru_network,
    masked_mean,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch
from marlvault.offline.value import (
    RecurrentQConfig,
    TrainState,
    cql_penalty,
    double_q_next,
    independent_td,
    q_algorithm,
    q_network,
    q_sequence,
    target_update,
)
from marlvault.optim import make_optimiser

Array = jax.Array


@dataclass(frozen=True)
class Config(RecurrentQConfig):
    """Hyper-parameters of IQL+CQL (the shared recurrent Q-learner's plus the CQL weight)."""

    cql_weight: float = 2.0
    """Weight of the CQL regulariser (0 gives plain double-Q IQL)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "cql_weight", lo=0.0)


def iql_cql_loss(q_all: Array, q_target_all: Array, batch: SequenceBatch, gamma: float,
                 cql_weight: float) -> tuple[Array, dict]:
    """IQL+CQL loss of one batch of windows.

    Args:
        q_all: [L+1, K, N, A] online Q at every window position.
        q_target_all: [L+1, K, N, A] target-network Q.
        batch: the windows (time-major).
        gamma: discount.
        cql_weight: CQL weight.
    """
    v_next = double_q_next(q_all[1:], q_target_all[1:], batch.legal[1:])
    q_a, td = independent_td(q_all, v_next, batch, gamma)  # [L, K, N], []
    cql = masked_mean(cql_penalty(q_all[:-1], batch.legal[:-1], batch.actions),
                      batch.mask[..., None])  # fmt: skip
    loss = td + cql_weight * cql
    return loss, {"loss": loss, "td_loss": td, "cql_loss": cql,
                  "mean_q": masked_mean(q_a, batch.mask[..., None])}


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    net = q_network(config, spec)
    seq = lambda params, obs: q_sequence(net, params, obs, config.rnn_size)  # noqa: E731

    def loss(params: Any, target_params: Any, batch: SequenceBatch) -> tuple[Array, dict]:
        return iql_cql_loss(seq(params, batch.obs), seq(target_params, batch.obs), batch,
                            config.gamma, config.cql_weight)

    return target_update(make_optimiser(config.lr, config.max_grad_norm), loss, config.tau)


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState``."""
    net = q_network(config, spec)
    tx = make_optimiser(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        params = init_gru_network(net, key, spec, config.rnn_size)
        return TrainState(params, params, tx.init(params), jnp.zeros((), jnp.int32))

    return init


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps; no global state."""
    return DataNeeds(config.seq_len, 0, False)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The IQL+CQL bundle the offline trainer runs."""
    return q_algorithm("iql-cql", config, spec, make_init(config, spec),
                       make_update_step(config, spec), lambda state: state.params)


ENTRY = AlgorithmEntry("iql-cql", Config, data_needs, make_algorithm,
                       "Recurrent independent Q-learning with CQL (double Q, target network).")

__all__ = ["ENTRY", "Config", "TrainState", "data_needs", "iql_cql_loss", "make_algorithm",
           "make_init", "make_update_step"]
