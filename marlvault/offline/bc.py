"""Behaviour cloning (BC) for discrete multi-agent actions, feed-forward or recurrent.

One network shared by all agents (agent ids in the input) maximises the log-likelihood of the
recorded actions under a categorical restricted to the legal actions::

    loss = - mean_{steps in an episode, agents} log pi(a_t | o_t, legal_t)

Feed-forward BC trains on transitions (every step of the vault, ``seq_len = 1``); recurrent BC
on windows of ``seq_len`` steps that never cross an episode boundary (``offline/dataset.py``),
with the GRU started from zeros at each window start. Steps whose recorded action is illegal under
the recorded mask (corrupt data) are left out and counted. Acting is greedy over legal actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from marlvault.config import require_at_least
from marlvault.errors import ConfigError
from marlvault.networks import Actor, RecurrentQNetwork, ScannedRNN
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
    """Hyper-parameters of BC."""

    recurrent: bool = False
    """Use a GRU policy trained on windows (else an MLP on single steps)."""
    hidden: tuple[int, ...] = (128, 128)
    """MLP torso sizes (recurrent: the torso before the GRU)."""
    rnn_size: int = 64
    """GRU width (recurrent only)."""
    seq_len: int = 20
    """Window length for the recurrent policy (feed-forward uses single steps)."""
    batch_size: int = 64
    """Windows (recurrent) or transitions x 16 (feed-forward) per update."""
    lr: float = 3e-4
    """Adam learning rate."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    num_updates: int = 20_000
    """Gradient updates in the whole run."""

    def __post_init__(self) -> None:
        require_at_least("system", self, "rnn_size", "seq_len", "batch_size", "num_updates")
        if self.lr <= 0:
            raise ConfigError(f"system.lr: expected > 0, got {self.lr}")

    @property
    def window_len(self) -> int:
        """L of the training windows."""
        return self.seq_len if self.recurrent else 1

    @property
    def items_per_batch(self) -> int:
        """Windows per update (feed-forward draws 16x more single steps for the same cost)."""
        return self.batch_size if self.recurrent else self.batch_size * 16


class TrainState(NamedTuple):
    params: Any  # network parameters
    opt_state: Any  # optax state
    step: Array  # [] int32 updates done


def _network(config: Config, spec: DataSpec) -> nn.Module:
    if config.recurrent:
        return RecurrentQNetwork(spec.action_dim, config.hidden, config.rnn_size)
    return Actor(spec.action_dim, config.hidden)


def policy_logits(net: nn.Module, params: Any, config: Config, batch: SequenceBatch) -> Array:
    """[L, K, N, A] unmasked logits for the window steps (the extra next position is dropped)."""
    obs = batch.obs[:-1]  # [L, K, N, O']
    if not config.recurrent:
        return net.apply(params, obs)
    length, k, n = obs.shape[:3]
    h0 = ScannedRNN.initialize_carry((k, n), config.rnn_size)
    _, logits = net.apply(params, h0, (obs, window_resets(length, (k, n))))
    return logits


def bc_loss(logits: Array, legal: Array, actions: Array, mask: Array) -> tuple[Array, dict]:
    """Masked negative log-likelihood of the recorded actions.

    Args:
        logits: [L, K, N, A] float32 raw policy logits.
        legal: [L, K, N, A] float32 legal-action masks.
        actions: [L, K, N] int32 recorded actions.
        mask: [L, K] float32, 1 for steps inside the window's episode.

    Returns:
        the scalar loss and metrics (loss, accuracy, fraction of illegal recorded actions).
    """
    logp = jax.nn.log_softmax(mask_illegal(logits, legal), axis=-1)
    logp_a = jnp.take_along_axis(logp, actions[..., None], axis=-1)[..., 0]  # [L, K, N]
    was_legal = jnp.take_along_axis(legal, actions[..., None], axis=-1)[..., 0] > 0
    weight = mask[..., None] * was_legal
    loss = -masked_mean(logp_a, weight)
    acc = masked_mean((greedy(logits, legal) == actions).astype(jnp.float32), weight)
    illegal = masked_mean(1.0 - was_legal.astype(jnp.float32), mask[..., None])
    return loss, {"loss": loss, "accuracy": acc, "illegal_actions": illegal}


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    net, tx = _network(config, spec), make_optimizer(config.lr, config.max_grad_norm)

    def update(state: TrainState, batch: SequenceBatch) -> tuple[TrainState, dict]:
        def loss_fn(params: Any) -> tuple[Array, dict]:
            logits = policy_logits(net, params, config, batch)
            return bc_loss(logits, batch.legal[:-1], batch.actions, batch.mask)

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), metrics

    return update


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState``."""
    net, tx = _network(config, spec), make_optimizer(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        x = jnp.zeros((1, 1, spec.num_agents, spec.input_dim))
        if config.recurrent:
            h0 = ScannedRNN.initialize_carry((1, spec.num_agents), config.rnn_size)
            params = net.init(key, h0, (x, jnp.zeros((1, 1, spec.num_agents), bool)))
        else:
            params = net.init(key, x)
        return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))

    return init


def make_act(config: Config, spec: DataSpec):
    """``act(params, hidden, obs [E, N, O'], legal [E, N, A], reset [E], key=None)
    -> (hidden, actions)``: greedy, or sampled from the policy when ``key`` is given."""
    net = _network(config, spec)

    def act(params: Any, hidden: Array, obs: Array, legal: Array, reset: Array, key=None):
        if not config.recurrent:
            return hidden, choose(net.apply(params, obs), legal, key)
        resets = jnp.broadcast_to(reset[:, None], obs.shape[:2])[None]
        hidden, logits = net.apply(params, hidden, (obs[None], resets))
        return hidden, choose(logits[0], legal, key)

    return act


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The BC bundle the offline trainer runs."""
    return Algorithm(
        name="bc",
        seq_len=config.window_len,
        stride=0 if config.recurrent else 1,
        batch_size=config.items_per_batch,
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


__all__ = ["Config", "TrainState", "bc_loss", "make_algorithm", "make_init", "make_train",
           "make_update_step", "policy_logits"]
