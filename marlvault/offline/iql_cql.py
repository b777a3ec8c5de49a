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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from marlvault.config import require_at_least
from marlvault.errors import ConfigError
from marlvault.networks import RecurrentQNetwork, ScannedRNN
from marlvault.offline.common import (
    Algorithm,
    choose,
    greedy,
    make_memory_train,
    make_optimizer,
    mask_illegal,
    masked_mean,
    window_resets,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch

Array = jax.Array


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of IQL+CQL."""

    hidden: tuple[int, ...] = (64,)
    """MLP torso before the GRU."""
    rnn_size: int = 64
    """GRU width."""
    seq_len: int = 20
    """Window length L."""
    batch_size: int = 32
    """Windows per update."""
    lr: float = 3e-4
    """Adam learning rate."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target network."""
    cql_weight: float = 2.0
    """Weight of the CQL regulariser (0 gives plain double-Q IQL)."""
    num_updates: int = 20_000
    """Gradient updates in the whole run."""

    def __post_init__(self) -> None:
        require_at_least("system", self, "rnn_size", "seq_len", "batch_size", "num_updates")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError(
                f"system.gamma/tau: expected gamma in [0, 1] and tau in (0, 1], got "
                f"gamma={self.gamma}, tau={self.tau}"
            )
        if self.cql_weight < 0 or self.lr <= 0:
            raise ConfigError(
                f"system.cql_weight/lr: expected cql_weight >= 0 and lr > 0, got "
                f"{self.cql_weight}, {self.lr}"
            )


class TrainState(NamedTuple):
    params: Any  # online Q-network (and mixer, for QMIX) parameters
    target_params: Any  # Polyak-averaged copy
    opt_state: Any  # optax state
    step: Array  # [] int32 updates done


def q_sequence(net: RecurrentQNetwork, params: Any, obs: Array, rnn_size: int) -> Array:
    """Q-values along windows: obs [L+1, K, N, O'] -> [L+1, K, N, A] (GRU from zeros)."""
    length, k, n = obs.shape[:3]
    h0 = ScannedRNN.initialize_carry((k, n), rnn_size)
    _, q = net.apply(params, h0, (obs, window_resets(length, (k, n))))
    return q


def double_q_next(q_next_online: Array, q_next_target: Array, next_legal: Array) -> Array:
    """Target-network value of the online arg-max over legal actions: [..., A] x2 -> [...]."""
    best = greedy(jax.lax.stop_gradient(q_next_online), next_legal)
    return jnp.take_along_axis(q_next_target, best[..., None], axis=-1)[..., 0]


def cql_penalty(q: Array, legal: Array, actions: Array) -> Array:
    """[...] logsumexp over legal actions of ``q`` [..., A] minus the recorded action's Q."""
    q_a = jnp.take_along_axis(q, actions[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(mask_illegal(q, legal), axis=-1) - q_a


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
    q, legal, next_legal = q_all[:-1], batch.legal[:-1], batch.legal[1:]
    q_a = jnp.take_along_axis(q, batch.actions[..., None], axis=-1)[..., 0]  # [L, K, N]
    v_next = double_q_next(q_all[1:], q_target_all[1:], next_legal)
    y = batch.rewards + gamma * (1.0 - batch.terminal)[..., None] * v_next
    td = masked_mean(jnp.square(q_a - jax.lax.stop_gradient(y)), batch.target_mask[..., None])
    cql = masked_mean(cql_penalty(q, legal, batch.actions), batch.mask[..., None])
    loss = td + cql_weight * cql
    return loss, {"loss": loss, "td_loss": td, "cql_loss": cql,
                  "mean_q": masked_mean(q_a, batch.mask[..., None])}


def polyak(target: Any, online: Any, tau: float) -> Any:
    """``(1 - tau) * target + tau * online`` leaf by leaf."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    net = RecurrentQNetwork(spec.action_dim, config.hidden, config.rnn_size)
    tx = make_optimizer(config.lr, config.max_grad_norm)

    def update(state: TrainState, batch: SequenceBatch) -> tuple[TrainState, dict]:
        q_target_all = q_sequence(net, state.target_params, batch.obs, config.rnn_size)

        def loss_fn(params: Any) -> tuple[Array, dict]:
            q_all = q_sequence(net, params, batch.obs, config.rnn_size)
            return iql_cql_loss(q_all, q_target_all, batch, config.gamma, config.cql_weight)

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        target = polyak(state.target_params, params, config.tau)
        return TrainState(params, target, opt_state, state.step + 1), metrics

    return update


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState``."""
    net = RecurrentQNetwork(spec.action_dim, config.hidden, config.rnn_size)
    tx = make_optimizer(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        n = spec.num_agents
        h0 = ScannedRNN.initialize_carry((1, n), config.rnn_size)
        x = jnp.zeros((1, 1, n, spec.input_dim))
        params = net.init(key, h0, (x, jnp.zeros((1, 1, n), bool)))
        return TrainState(params, params, tx.init(params), jnp.zeros((), jnp.int32))

    return init


def make_act(config: Config, spec: DataSpec):
    """``act(params, hidden, obs [E, N, O'], legal [E, N, A], reset [E], key=None)
    -> (hidden, actions)``.

    ``params`` are the Q-network's (for QMIX, the agent network's); greedy over legal actions, or
    Boltzmann over their Q-values when ``key`` is given.
    """
    net = RecurrentQNetwork(spec.action_dim, config.hidden, config.rnn_size)

    def act(params: Any, hidden: Array, obs: Array, legal: Array, reset: Array, key=None):
        resets = jnp.broadcast_to(reset[:, None], obs.shape[:2])[None]
        hidden, q = net.apply(params, hidden, (obs[None], resets))
        return hidden, choose(q[0], legal, key)

    return act


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The IQL+CQL bundle the offline trainer runs."""
    return Algorithm(
        name="iql-cql",
        seq_len=config.seq_len,
        stride=0,
        batch_size=config.batch_size,
        init=make_init(config, spec),
        update=make_update_step(config, spec),
        params=lambda state: state.params,
        init_hidden=lambda e: ScannedRNN.initialize_carry((e, spec.num_agents), config.rnn_size),
        act=make_act(config, spec),
    )


def make_train(config: Config, spec: DataSpec):
    """``train(data, key) -> (TrainState, metrics)``: the whole run in memory, one ``lax.scan``
    (see :func:`marlvault.offline.common.make_memory_train`)."""
    return make_memory_train(make_algorithm(config, spec), spec, config.num_updates)


__all__ = ["Config", "TrainState", "cql_penalty", "double_q_next", "iql_cql_loss",
           "make_algorithm", "make_init", "make_train", "make_update_step", "polyak", "q_sequence"]
