"""QMIX with conservative Q-learning (QMIX+CQL), recurrent, discrete actions, global state.

The per-agent GRU Q-network of ``value.py`` (shared, agent ids in the input) feeds a monotonic
mixing network whose weights are produced from the global state by hyper-networks::

    Q_tot(s, a) = w2(s) . elu(W1(s)^T q(a) + b1(s)) + b2(s),   W1, w2 >= 0 (absolute values)
    y_t   = mean_agents(r_t) + gamma * (1 - terminal_t) * Q_tot^target(s_{t+1}, a*_{t+1})
    loss  = mean over steps with target_mask of (Q_tot(s_t, a_t) - y_t)^2 + cql_weight * cql

``a*`` is each agent's greedy legal action under the online network (double Q); the CQL term is
the per-agent one of IQL+CQL. The vault must hold ``infos.state``: without it the dataset raises
:class:`~marlvault.errors.DatasetError` (build the dataset with ``need_state=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from marlvault.config import MAX_WIDTH, require_range
from marlvault.errors import DatasetError
from marlvault.networks import GRUActionNetwork
from marlvault.offline import iql_cql, value
from marlvault.offline.common import (
    Algorithm,
    AlgorithmEntry,
    DataNeeds,
    init_gru_network,
    masked_mean,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch
from marlvault.offline.value import TrainState
from marlvault.optim import make_optimiser

Array = jax.Array


@dataclass(frozen=True)
class Config(iql_cql.Config):
    """Hyper-parameters of QMIX+CQL (those of IQL+CQL plus the mixer's)."""

    mixer_embed: int = 32
    """Width of the mixing network's hidden layer."""
    hyper_hidden: int = 64
    """Width of the hyper-networks' hidden layer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "mixer_embed", "hyper_hidden", lo=1, hi=MAX_WIDTH)


class QMixer(nn.Module):
    """Monotonic mixer: (q [..., N], state [..., S]) -> Q_tot [...]."""

    num_agents: int
    embed: int = 32
    hyper_hidden: int = 64

    @nn.compact
    def __call__(self, q: Array, state: Array) -> Array:
        n, e = self.num_agents, self.embed
        hyper = nn.Dense(self.hyper_hidden)
        w1 = jnp.abs(nn.Dense(n * e)(nn.relu(hyper(state)))).reshape(*state.shape[:-1], n, e)
        b1 = nn.Dense(e)(state)
        hidden = nn.elu(jnp.einsum("...n,...ne->...e", q, w1) + b1)
        w2 = jnp.abs(nn.Dense(e)(nn.relu(nn.Dense(self.hyper_hidden)(state))))
        b2 = nn.Dense(1)(nn.relu(nn.Dense(e)(state)))[..., 0]
        return jnp.sum(hidden * w2, axis=-1) + b2


class Nets(NamedTuple):
    agent: GRUActionNetwork
    mixer: QMixer


def qmix_cql_loss(nets: Nets, params: Any, target_params: Any, batch: SequenceBatch,
                  config: Config) -> tuple[Array, dict]:
    """QMIX+CQL loss of one batch of windows (time-major, ``state`` [L+1, K, S])."""
    q_all = value.q_sequence(nets.agent, params["agent"], batch.obs, config.rnn_size)
    q_target_all = value.q_sequence(nets.agent, target_params["agent"], batch.obs,
                                    config.rnn_size)
    q_a = jnp.take_along_axis(q_all[:-1], batch.actions[..., None], axis=-1)[..., 0]
    v_next = value.double_q_next(q_all[1:], q_target_all[1:], batch.legal[1:])  # [L, K, N]
    q_tot = nets.mixer.apply(params["mixer"], q_a, batch.state[:-1])  # [L, K]
    v_tot = nets.mixer.apply(target_params["mixer"], v_next, batch.state[1:])
    y = batch.rewards.mean(axis=-1) + config.gamma * (1.0 - batch.terminal) * v_tot
    td = masked_mean(jnp.square(q_tot - jax.lax.stop_gradient(y)), batch.target_mask)
    cql = masked_mean(value.cql_penalty(q_all[:-1], batch.legal[:-1], batch.actions),
                      batch.mask[..., None])
    loss = td + config.cql_weight * cql
    return loss, {"loss": loss, "td_loss": td, "cql_loss": cql,
                  "mean_q_tot": masked_mean(q_tot, batch.mask)}


def require_state(spec: DataSpec, name: str, instead: str) -> None:
    """Raise :class:`~marlvault.errors.DatasetError` naming the fix when ``spec`` has no global
    state (``name``: the mixing algorithm; ``instead``: its independent counterpart)."""
    if not spec.has_state:
        raise DatasetError(
            f"{name} needs the global state 'infos.state' (B, T, S) in the vault, found none; "
            f"record with an environment that provides a state, or train {instead} instead"
        )


def make_mixer(config: Config, spec: DataSpec) -> QMixer:
    """The mixer of a config with ``mixer_embed`` and ``hyper_hidden``."""
    return QMixer(spec.num_agents, config.mixer_embed, config.hyper_hidden)


def init_mixer(mixer: QMixer, key: Array, spec: DataSpec) -> Any:
    """Mixer parameters for ``spec``'s agents and state size."""
    return mixer.init(key, jnp.zeros((1, spec.num_agents)), jnp.zeros((1, spec.state_dim)))


def _nets(config: Config, spec: DataSpec) -> Nets:
    require_state(spec, "qmix-cql", "iql-cql")
    return Nets(value.q_network(config, spec),
                make_mixer(config, spec))


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    nets = _nets(config, spec)

    def loss(params: dict, target_params: dict, batch: SequenceBatch) -> tuple[Array, dict]:
        return qmix_cql_loss(nets, params, target_params, batch, config)

    return value.target_update(make_optimiser(config.lr, config.max_grad_norm), loss, config.tau)


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState``."""
    nets, tx = _nets(config, spec), make_optimiser(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        k1, k2 = jax.random.split(key)
        params = {
            "agent": init_gru_network(nets.agent, k1, spec, config.rnn_size),
            "mixer": init_mixer(nets.mixer, k2, spec),
        }
        return TrainState(params, params, tx.init(params), jnp.zeros((), jnp.int32))

    return init


def init_with_second_network(nets, tx, spec: DataSpec, rnn_size: int, key: Array,
                             second: str) -> TrainState:
    """A QMIX critic (``{"q", "mixer"}``, target a copy) plus a second agent network under
    ``params[second]``: QMIX+BCQ's behaviour model (``"bc"``), MAICQ's policy (``"policy"``)."""
    k_q, k_second, k_mix = jax.random.split(key, 3)
    params = {
        "q": init_gru_network(nets.agent, k_q, spec, rnn_size),
        second: init_gru_network(nets.agent, k_second, spec, rnn_size),
        "mixer": init_mixer(nets.mixer, k_mix, spec),
    }
    target = {"q": params["q"], "mixer": params["mixer"]}
    return TrainState(params, target, tx.init(params), jnp.zeros((), jnp.int32))


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps with the global state."""
    return DataNeeds(config.seq_len, 0, True)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The QMIX+CQL bundle the offline trainer runs (acting uses the agent network only)."""
    _nets(config, spec)
    return value.q_algorithm("qmix-cql", config, spec, make_init(config, spec),
                       make_update_step(config, spec), lambda state: state.params["agent"])


ENTRY = AlgorithmEntry("qmix-cql", Config, data_needs, make_algorithm,
                       "Recurrent QMIX with CQL (needs infos.state in the vault).")

__all__ = ["ENTRY", "Config", "QMixer", "TrainState", "data_needs", "init_mixer", "make_algorithm",
           "make_init", "make_mixer", "make_update_step", "qmix_cql_loss", "require_state"]
