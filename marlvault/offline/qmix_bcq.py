"""QMIX with discrete batch-constrained Q-learning (QMIX+BCQ), recurrent, global state.

The agents' Q-network and behaviour network ``G`` of IQL+BCQ (``iql_bcq.py``) with QMIX+CQL's
monotonic mixer on the global state (``qmix_cql.QMixer``) in place of per-agent targets::

    a*_{t+1} = per agent, argmax_{a in allowed(o_{t+1})} Q_online(o_{t+1}, a)   (double Q)
    y_t      = mean_agents(r_t) + gamma * (1 - terminal_t) * Q_tot^target(s_{t+1}, q_target(a*_{t+1}))
    td       = mean over steps with target_mask of (Q_tot(s_t, q(a_t)) - y_t)^2
    loss     = td + bc_weight * bc

``allowed`` and ``bc`` (the behaviour cross-entropy) are those of IQL+BCQ; acting uses the agent
networks only (arg-max of Q over the allowed actions). The vault must hold ``infos.state``;
without it building the algorithm raises :class:`~marlvault.errors.DatasetError` with the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from marlvault.config import MAX_WIDTH, require_range
from marlvault.networks import GRUActionNetwork
from marlvault.offline import iql_bcq, value
from marlvault.offline.bc import bc_loss
from marlvault.offline.common import (
    Algorithm,
    AlgorithmEntry,
    DataNeeds,
    masked_mean,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch
from marlvault.offline.qmix_cql import (
    QMixer,
    init_with_second_network,
    make_mixer,
    require_state,
)
from marlvault.offline.value import TrainState
from marlvault.optim import make_optimiser

Array = jax.Array


@dataclass(frozen=True)
class Config(iql_bcq.Config):
    """Hyper-parameters of QMIX+BCQ (those of IQL+BCQ plus the mixer's)."""

    mixer_embed: int = 32
    """Width of the mixing network's hidden layer."""
    hyper_hidden: int = 64
    """Width of the hyper-networks' hidden layer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "mixer_embed", "hyper_hidden", lo=1, hi=MAX_WIDTH)


class Nets(NamedTuple):
    agent: GRUActionNetwork  # the Q-network's and G's architecture
    mixer: QMixer


def qmix_bcq_loss(nets: Nets, params: dict, target_params: dict, batch: SequenceBatch,
                  config: Config) -> tuple[Array, dict]:
    """QMIX+BCQ loss of one batch of windows (time-major, ``state`` [L+1, K, S]).

    ``params``: ``{"q", "bc", "mixer"}``; ``target_params``: ``{"q", "mixer"}``.
    """
    q_all = value.q_sequence(nets.agent, params["q"], batch.obs, config.rnn_size)
    q_target_all = value.q_sequence(nets.agent, target_params["q"], batch.obs, config.rnn_size)
    bc_all = value.q_sequence(nets.agent, params["bc"], batch.obs, config.rnn_size)
    q_a = jnp.take_along_axis(q_all[:-1], batch.actions[..., None], axis=-1)[..., 0]
    v_next = iql_bcq.bcq_next_value(q_all[1:], q_target_all[1:], bc_all[1:], batch.legal[1:],
                                    config.threshold)  # [L, K, N]
    q_tot = nets.mixer.apply(params["mixer"], q_a, batch.state[:-1])  # [L, K]
    v_tot = nets.mixer.apply(target_params["mixer"], v_next, batch.state[1:])
    y = batch.rewards.mean(axis=-1) + config.gamma * (1.0 - batch.terminal) * v_tot
    td = masked_mean(jnp.square(q_tot - jax.lax.stop_gradient(y)), batch.target_mask)
    bc, bc_metrics = bc_loss(bc_all[:-1], batch.legal[:-1], batch.actions, batch.mask)
    loss = td + config.bc_weight * bc
    return loss, {"loss": loss, "td_loss": td, "bc_loss": bc, "bc_accuracy": bc_metrics["accuracy"],
                  "mean_q_tot": masked_mean(q_tot, batch.mask)}


def _nets(config: Config, spec: DataSpec) -> Nets:
    require_state(spec, "qmix-bcq", "iql-bcq")
    return Nets(value.q_network(config, spec), make_mixer(config, spec))


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    nets = _nets(config, spec)

    def loss(params: dict, target_params: dict, batch: SequenceBatch) -> tuple[Array, dict]:
        return qmix_bcq_loss(nets, params, target_params, batch, config)

    return value.target_update(make_optimiser(config.lr, config.max_grad_norm), loss, config.tau,
                               online=value.q_and_mixer)


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState``."""
    nets, tx = _nets(config, spec), make_optimiser(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        return init_with_second_network(nets, tx, spec, config.rnn_size, key, "bc")

    return init


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps with the global state."""
    return DataNeeds(config.seq_len, 0, True)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The QMIX+BCQ bundle the offline trainer runs (acting uses the agent networks only)."""
    _nets(config, spec)
    return value.bcq_algorithm(
        "qmix-bcq", config, spec, make_init(config, spec), make_update_step(config, spec),
        lambda state: {"q": state.params["q"], "bc": state.params["bc"]})


ENTRY = AlgorithmEntry("qmix-bcq", Config, data_needs, make_algorithm,
                       "Recurrent QMIX with discrete BCQ (needs infos.state in the vault).")

__all__ = ["ENTRY", "Config", "TrainState", "data_needs", "make_algorithm", "make_init",
           "make_update_step", "qmix_bcq_loss"]
