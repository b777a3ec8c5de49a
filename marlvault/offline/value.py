"""Value-learning pieces the discrete offline Q-learners share (IQL+CQL, QMIX+CQL, IQL+BCQ, QMIX+BCQ,
MAICQ).

Q-values along windows come from one :class:`~marlvault.networks.GRUActionNetwork` shared by all
agents; the target network follows the online one by Polyak averaging; the bootstrap value is the
target network's value of the online network's greedy legal action (double Q); the conservative
(CQL) term pushes down the log-sum-exp over legal actions relative to the recorded action.

The BCQ learners add a behaviour-cloning network G (same architecture, its own parameters) and
restrict the bootstrap arg-max and acting to the actions G finds likely enough
(:func:`bcq_allowed`); their acting carry is the pair (Q-network GRU state, G's GRU state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from marlvault.config import require_range
from marlvault.networks import GRUActionNetwork, ScannedRNN
from marlvault.offline.common import (
    Algorithm,
    check_learner_sizes,
    choose,
    gradient_step,
    greedy,
    gru_act,
    gru_sequence,
    mask_illegal,
    masked_mean,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch

Array = jax.Array


@dataclass(frozen=True)
class RecurrentQConfig:
    """Hyper-parameters every recurrent offline Q-learner shares (each algorithm's ``Config``
    adds its own regulariser's)."""

    hidden: tuple[int, ...] = (64,)
    """MLP torso before the GRU (of every network the algorithm trains)."""
    rnn_size: int = 64
    """GRU width."""
    seq_len: int = 20
    """Window length L."""
    batch_size: int = 32
    """Windows per update."""
    lr: float = 3e-4
    """Adam learning rate (one optimiser for all of the algorithm's networks)."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target network."""
    num_updates: int = 20_000
    """Gradient updates in the whole run."""

    def __post_init__(self) -> None:
        check_learner_sizes(self, self.batch_size * (self.seq_len + 1))
        require_range("system", self, "lr", "max_grad_norm", lo=0.0, lo_open=True)
        require_range("system", self, "gamma", lo=0.0, hi=1.0)
        require_range("system", self, "tau", lo=0.0, hi=1.0, lo_open=True)


def independent_td(q_all: Array, v_next: Array, batch: SequenceBatch,
                   gamma: float) -> tuple[Array, Array]:
    """Each agent's Q of the recorded action ``[L, K, N]`` and its mean squared TD error against
    ``r + gamma * (1 - terminal) * v_next`` (no gradient through the target; steps without a
    known next observation, ``target_mask == 0``, left out).

    Args:
        q_all: [L+1, K, N, A] online Q at every window position.
        v_next: [L, K, N] bootstrap value of the next position.
    """
    q_a = jnp.take_along_axis(q_all[:-1], batch.actions[..., None], axis=-1)[..., 0]
    y = batch.rewards + gamma * (1.0 - batch.terminal)[..., None] * v_next
    td = masked_mean(jnp.square(q_a - jax.lax.stop_gradient(y)), batch.target_mask[..., None])
    return q_a, td


class TrainState(NamedTuple):
    params: Any  # online Q-network (and mixer, for QMIX) parameters
    target_params: Any  # Polyak-averaged copy
    opt_state: Any  # optax state
    step: Array  # [] int32 updates done


def q_network(config: Any, spec: DataSpec) -> GRUActionNetwork:
    """The agents' shared Q-network for a config with ``hidden`` and ``rnn_size``."""
    return GRUActionNetwork(spec.action_dim, config.hidden, config.rnn_size)


def q_sequence(net: GRUActionNetwork, params: Any, obs: Array, rnn_size: int) -> Array:
    """Q-values along windows: obs [L+1, K, N, O'] -> [L+1, K, N, A] (GRU from zeros)."""
    return gru_sequence(net, params, obs, rnn_size)


def double_q_next(q_next_online: Array, q_next_target: Array, next_legal: Array) -> Array:
    """Target-network value of the online arg-max over legal actions: [..., A] x2 -> [...]."""
    best = greedy(jax.lax.stop_gradient(q_next_online), next_legal)
    return jnp.take_along_axis(q_next_target, best[..., None], axis=-1)[..., 0]


def cql_penalty(q: Array, legal: Array, actions: Array) -> Array:
    """[...] logsumexp over legal actions of ``q`` [..., A] minus the recorded action's Q."""
    q_a = jnp.take_along_axis(q, actions[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(mask_illegal(q, legal), axis=-1) - q_a


def polyak(target: Any, online: Any, tau: float) -> Any:
    """``(1 - tau) * target + tau * online`` leaf by leaf."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def target_step(tx: Any, loss_fn: Any, state: TrainState, tau: float,
                online: Any = lambda params: params) -> tuple[TrainState, dict]:
    """One optimiser step on ``loss_fn(params) -> (loss, metrics)``, then the Polyak update of
    the target copy towards ``online(params)`` (the parameters that have one)."""
    params, opt_state, metrics = gradient_step(tx, loss_fn, state.params, state.opt_state)
    target = polyak(state.target_params, online(params), tau)
    return TrainState(params, target, opt_state, state.step + 1), metrics


def target_update(tx: Any, loss: Any, tau: float,
                  online: Any = lambda params: params) -> Any:
    """``update(state, batch) -> (state, metrics)`` (pure, jittable): one :func:`target_step` on
    ``loss(params, target_params, batch) -> (loss, metrics)``, where only ``params`` get
    gradients."""

    def update(state: TrainState, batch: SequenceBatch) -> tuple[TrainState, dict]:
        return target_step(tx, lambda params: loss(params, state.target_params, batch), state,
                           tau, online)

    return update


def q_and_mixer(params: dict) -> dict:
    """The QMIX critic's parts of ``params`` (``{"q", "mixer"}``): what its target copies."""
    return {"q": params["q"], "mixer": params["mixer"]}


def make_q_act(config: Any, spec: DataSpec):
    """``act(params, hidden, obs [E, N, O'], legal [E, N, A], reset [E], key=None)
    -> (hidden, actions)``.

    ``params`` are the Q-network's (for QMIX, the agent network's); greedy over legal actions, or
    Boltzmann over their Q-values when ``key`` is given.
    """
    net = q_network(config, spec)

    def act(params: Any, hidden: Array, obs: Array, legal: Array, reset: Array, key=None):
        return gru_act(net, params, hidden, obs, legal, reset, key)

    return act


def q_algorithm(name: str, config: Any, spec: DataSpec, init, update, params) -> Algorithm:
    """The bundle of a recurrent Q-learner: windows of ``config.seq_len``, acting with the
    agents' Q-network (``params(state)`` picks its parameters)."""
    return Algorithm(
        name=name,
        seq_len=config.seq_len,
        stride=0,
        batch_size=config.batch_size,
        init=init,
        update=update,
        params=params,
        init_hidden=lambda e: ScannedRNN.initialize_carry((e, spec.num_agents), config.rnn_size),
        act=make_q_act(config, spec),
    )


def bcq_allowed(bc_logits: Array, legal: Array, threshold: float) -> Array:
    """[..., A] float32 0/1: the legal actions whose behaviour probability is at least
    ``threshold`` times the most likely legal action's, ``G(a|o) / max_a' G(a'|o) >= threshold``.

    ``G`` is the softmax of ``bc_logits`` over legal actions; the most likely legal action is always
    allowed (its ratio is 1), illegal actions never. Compared in log space (no gradient flows).
    """
    logp = jax.nn.log_softmax(mask_illegal(jax.lax.stop_gradient(bc_logits), legal), axis=-1)
    gap = logp - jnp.max(logp, axis=-1, keepdims=True)  # log of the ratio, <= 0
    keep = (gap >= jnp.log(threshold)) | (gap == 0.0)
    return ((legal > 0) & keep).astype(jnp.float32)


def bcq_algorithm(name: str, config: Any, spec: DataSpec, init, update, params) -> Algorithm:
    """The bundle of a recurrent BCQ learner: windows of ``config.seq_len``; ``params(state)``
    gives ``{"q": Q-network, "bc": behaviour network}`` parameters (a plain dict, as checkpoints
    restore it); acting is the arg-max of Q over :func:`bcq_allowed` at
    ``config.threshold`` (Boltzmann over the allowed Q-values when ``key`` is given)."""
    net = q_network(config, spec)

    def init_hidden(e: int) -> tuple[Array, Array]:
        h = ScannedRNN.initialize_carry((e, spec.num_agents), config.rnn_size)
        return h, h

    def act(p: dict, hidden, obs: Array, legal: Array, reset: Array, key=None):
        resets = jnp.broadcast_to(reset[:, None], obs.shape[:2])[None]
        h_q, q = net.apply(p["q"], hidden[0], (obs[None], resets))
        h_bc, logits = net.apply(p["bc"], hidden[1], (obs[None], resets))
        allowed = bcq_allowed(logits[0], legal, config.threshold)
        return (h_q, h_bc), choose(q[0], allowed, key)

    return Algorithm(name=name, seq_len=config.seq_len, stride=0, batch_size=config.batch_size,
                     init=init, update=update, params=params, init_hidden=init_hidden, act=act)
