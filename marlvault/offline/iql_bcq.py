"""Independent Q-learning with discrete batch-constrained Q-learning (IQL+BCQ), recurrent.

Discrete BCQ (Fujimoto et al. 2019, "Benchmarking Batch Deep Reinforcement Learning
Algorithms") keeps the Q-learner away from actions the data never shows: a behaviour-cloning
network ``G(a | o)`` (a second GRU network of the Q-network's shape, shared by all agents, trained
by cross-entropy on the recorded legal actions) decides which actions the Q-learner may pick::

    allowed(o)  = { legal a : G(a|o) / max_{legal a'} G(a'|o) >= threshold }
    a*_{t+1}    = argmax_{a in allowed(o_{t+1})} Q_online(o_{t+1}, a)        (double Q)
    y_t         = r_t + gamma * (1 - terminal_t) * Q_target(o_{t+1}, a*_{t+1})
    td          = mean over (t, agent) with target_mask_t of (Q(o_t, a_t) - y_t)^2
    bc          = - mean over (t, agent) in the episode of log G(a_t | o_t)   (legal softmax)
    loss        = td + bc_weight * bc

The most likely action of ``G`` is always allowed, illegal ones never; acting is the arg-max of Q
over ``allowed(o_t)``. As in IQL+CQL a terminal stops the bootstrap, a truncation does not, a
step whose next observation is unknown (``target_mask == 0``) gives no TD error, and the target
Q-network follows the online one by Polyak averaging (``G`` has no target copy). ``G`` and Q
share no parameters, so each term trains only its own network.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from marlvault.config import require_range
from marlvault.offline.bc import bc_loss
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
    bcq_algorithm,
    bcq_allowed,
    double_q_next,
    independent_td,
    q_network,
    q_sequence,
    target_update,
)
from marlvault.optim import make_optimiser

Array = jax.Array


@dataclass(frozen=True)
class Config(RecurrentQConfig):
    """Hyper-parameters of IQL+BCQ (the shared recurrent Q-learner's, for the Q-network and the
    behaviour network alike, plus BCQ's)."""

    threshold: float = 0.3
    """BCQ threshold: actions with G(a|o) / max G below it are never picked (0: all legal)."""
    bc_weight: float = 1.0
    """Weight of the behaviour network's cross-entropy in the loss."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "bc_weight", lo=0.0, lo_open=True)
        require_range("system", self, "threshold", lo=0.0, hi=1.0)


def bcq_next_value(q_next_online: Array, q_next_target: Array, bc_next_logits: Array,
                   next_legal: Array, threshold: float) -> Array:
    """[...] target-network value of the online arg-max over the BCQ-allowed next actions."""
    allowed = bcq_allowed(bc_next_logits, next_legal, threshold)
    return double_q_next(q_next_online, q_next_target, allowed)


def iql_bcq_loss(q_all: Array, q_target_all: Array, bc_all: Array, batch: SequenceBatch,
                 gamma: float, threshold: float, bc_weight: float) -> tuple[Array, dict]:
    """IQL+BCQ loss of one batch of windows.

    Args:
        q_all: [L+1, K, N, A] online Q at every window position.
        q_target_all: [L+1, K, N, A] target-network Q.
        bc_all: [L+1, K, N, A] behaviour-network logits.
        batch: the windows (time-major).
        gamma: discount.
        threshold: BCQ threshold.
        bc_weight: weight of the behaviour cross-entropy.
    """
    v_next = bcq_next_value(q_all[1:], q_target_all[1:], bc_all[1:], batch.legal[1:], threshold)
    q_a, td = independent_td(q_all, v_next, batch, gamma)  # [L, K, N], []
    bc, bc_metrics = bc_loss(bc_all[:-1], batch.legal[:-1], batch.actions, batch.mask)
    loss = td + bc_weight * bc
    return loss, {"loss": loss, "td_loss": td, "bc_loss": bc, "bc_accuracy": bc_metrics["accuracy"],
                  "mean_q": masked_mean(q_a, batch.mask[..., None])}


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    net = q_network(config, spec)
    seq = lambda params, obs: q_sequence(net, params, obs, config.rnn_size)  # noqa: E731

    def loss(params: dict, target_params: dict, batch: SequenceBatch) -> tuple[Array, dict]:
        return iql_bcq_loss(seq(params["q"], batch.obs), seq(target_params, batch.obs),
                            seq(params["bc"], batch.obs), batch, config.gamma, config.threshold,
                            config.bc_weight)

    return target_update(make_optimiser(config.lr, config.max_grad_norm), loss, config.tau,
                         online=lambda params: params["q"])


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState`` (``params``: ``{"q", "bc"}``; the target is Q's only)."""
    net = q_network(config, spec)
    tx = make_optimiser(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        k_q, k_bc = jax.random.split(key)
        params = {"q": init_gru_network(net, k_q, spec, config.rnn_size),
                  "bc": init_gru_network(net, k_bc, spec, config.rnn_size)}
        return TrainState(params, params["q"], tx.init(params), jnp.zeros((), jnp.int32))

    return init


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps; no global state."""
    return DataNeeds(config.seq_len, 0, False)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The IQL+BCQ bundle the offline trainer runs."""
    return bcq_algorithm("iql-bcq", config, spec, make_init(config, spec),
                         make_update_step(config, spec), lambda state: state.params)


ENTRY = AlgorithmEntry("iql-bcq", Config, data_needs, make_algorithm,
                       "Recurrent independent Q-learning with discrete BCQ (behaviour-filtered "
                       "arg-max).")

__all__ = ["ENTRY", "Config", "TrainState", "bcq_next_value", "data_needs", "iql_bcq_loss",
           "make_algorithm", "make_init", "make_update_step"]
