"""Flax modules shared by the online and offline algorithms.

Inputs carry any leading batch axes (``[..., F]``); agent ids are *not* added here (the learner
appends them with :func:`marlvault.envs.wrappers.add_agent_ids`). All parameters are shared
across agents (one network applied to every agent's input).

- :class:`MLPTorso`: dense + ReLU stack.
- :class:`MaskedCategorical`: a categorical over discrete actions whose illegal actions get a large
  negative logit, so they are never sampled and carry no probability mass.
- :class:`Actor` (policy logits), :class:`Critic` (scalar value of a per-agent observation or a
  global state).
- :class:`ScannedRNN`: a GRU scanned over time that resets its carry where an episode starts;
  :class:`GRUActionNetwork` (MLP torso -> GRU -> one output per action) uses it, as BC's
  recurrent policy (logits) and as the offline Q-learners' Q-network (Q-values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ILLEGAL_LOGIT = -1e9
"""Logit given to illegal actions (``exp`` of it is exactly 0 in float32)."""


class MaskedCategorical(NamedTuple):
    """A categorical distribution restricted to legal actions.

    Every method broadcasts over leading axes; ``A`` is the number of actions.
    """

    logits: Array  # [..., A] float32, illegal entries already set to ILLEGAL_LOGIT
    legal: Array  # [..., A] bool

    @classmethod
    def from_logits(cls, logits: Array, legal: Array) -> MaskedCategorical:
        """Mask raw ``logits`` [..., A] with ``legal`` [..., A] (bool or 0/1)."""
        legal = legal.astype(bool)
        return cls(jnp.where(legal, logits, ILLEGAL_LOGIT), legal)

    def log_probs(self) -> Array:
        """[..., A] float32 log-probabilities (illegal: a very negative number)."""
        return jax.nn.log_softmax(self.logits, axis=-1)

    def sample(self, key: Array) -> Array:
        """[...] int32 actions drawn from the legal ones."""
        return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

    def mode(self) -> Array:
        """[...] int32 most likely legal action (greedy)."""
        return jnp.argmax(self.logits, axis=-1).astype(jnp.int32)

    def log_prob(self, action: Array) -> Array:
        """[...] float32 log-probability of ``action`` [...] int."""
        logp = self.log_probs()
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> Array:
        """[...] float32 entropy over the legal actions only."""
        logp = self.log_probs()
        return -jnp.sum(jnp.where(self.legal, jnp.exp(logp) * logp, 0.0), axis=-1)


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale))


class MLPTorso(nn.Module):
    """``len(hidden)`` dense layers with ReLU: [..., F] -> [..., hidden[-1]]."""

    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for size in self.hidden:
            x = nn.relu(_dense(size, np.sqrt(2.0))(x))
        return x


class Actor(nn.Module):
    """Policy head: [..., F] features -> [..., A] unmasked logits (mask with MaskedCategorical)."""

    action_dim: int
    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return _dense(self.action_dim, 0.01)(MLPTorso(self.hidden)(x))


class Critic(nn.Module):
    """Value head: [..., F] (an agent's observation, or the global state for MAPPO) -> [...]."""

    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return _dense(1, 1.0)(MLPTorso(self.hidden)(x))[..., 0]


class ScannedRNN(nn.Module):
    """A GRU over time: ``(h [B, H], (x [T, B, F], reset [T, B] bool)) -> (h, y [T, B, H])``.

    Where ``reset[t]`` is True (the first step of an episode) the carry is zeroed before step t,
    so no information crosses episode boundaries. Extra batch axes (e.g. agents) are allowed
    between T and F as long as ``h`` and ``reset`` have them too.
    """

    hidden_size: int = 128

    @nn.compact
    def __call__(self, h: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array]:
        cell = nn.scan(
            _ResetGRU,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=0,
            out_axes=0,
        )(self.hidden_size)
        return cell(h, inputs)

    @staticmethod
    def initialize_carry(batch_shape: tuple[int, ...], hidden_size: int) -> Array:
        """Zeros [*batch_shape, hidden_size] float32."""
        return jnp.zeros((*batch_shape, hidden_size), jnp.float32)


class _ResetGRU(nn.Module):
    hidden_size: int

    @nn.compact
    def __call__(self, h: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array]:
        x, reset = inputs
        h = jnp.where(reset[..., None], jnp.zeros_like(h), h)
        h, y = nn.GRUCell(self.hidden_size)(h, x)
        return h, y


class GRUActionNetwork(nn.Module):
    """MLP torso -> GRU -> one output per action:
    ``(h, (x [T, B, F], reset [T, B])) -> (h, out [T, B, A])``.

    The outputs are policy logits (recurrent BC) or Q-values (IQL/QMIX); the network is the same.
    """

    action_dim: int
    hidden: Sequence[int] = (128,)
    rnn_size: int = 128

    @nn.compact
    def __call__(self, h: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array]:
        x, reset = inputs
        h, y = ScannedRNN(self.rnn_size)(h, (MLPTorso(self.hidden)(x), reset))
        return h, _dense(self.action_dim, 1.0)(y)
