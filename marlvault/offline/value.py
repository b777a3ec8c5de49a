"""Value-learning pieces the offline Q-learners share (IQL+CQL, QMIX+CQL).

Q-values along windows come from one :class:`~marlvault.networks.GRUActionNetwork` shared by all
agents; the target network follows the online one by Polyak averaging; the bootstrap value is the
target network's value of the online network's greedy legal action (double Q); the conservative
(CQL) term pushes down the log-sum-exp over legal actions relative to the recorded action.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from marlvault.networks import GRUActionNetwork, ScannedRNN
from marlvault.offline.common import (
    Algorithm,
    greedy,
    gru_act,
    gru_sequence,
    mask_illegal,
)
from marlvault.offline.dataset import DataSpec

Array = jax.Array


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
