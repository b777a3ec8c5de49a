"""Flax modules shared by the online and offline algorithms.

Inputs carry any leading batch axes (``[..., F]``); agent ids are *not* added here (the learner
appends them with :func:`marlvault.envs.wrappers.add_agent_ids`). All parameters are shared
across agents (one network applied to every agent's input).

- :class:`MLPTorso`: dense + ReLU stack.
- :class:`MaskedCategorical`: a categorical over discrete actions whose illegal actions get a large
  negative logit, so they are never sampled and carry no probability mass.
- :class:`TanhGaussian`: a diagonal Gaussian whose samples are squashed by ``tanh`` into the
  action bounds (continuous actions).
- :class:`Actor` (policy logits), :class:`GaussianActor` (mean and state-independent log-std),
  :class:`Critic` (scalar value of a per-agent observation or a global state).
- :class:`ActionSpace`: discrete or continuous; builds the actor and its distribution, so the
  learners, evaluation and recording handle both with one code path.
- :class:`ScannedRNN`: a GRU scanned over time that resets its carry where an episode starts;
  :class:`GRUActionNetwork` (MLP torso -> GRU -> one output per action) uses it, as BC's
  recurrent policy (logits) and as the offline Q-learners' Q-network (Q-values).
- :class:`RecurrentNetwork`: MLP torso -> GRU -> any head (an :class:`ActionSpace` actor or a
  :class:`Critic`), the recurrent IPPO/MAPPO actor and critic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
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


    def to_env(self, raw: Array) -> Array:
        """The action the environment takes for a sample: the index itself."""
        return raw

    def from_env(self, action: Array) -> Array:
        """Inverse of :meth:`to_env` (identity)."""
        return action.astype(jnp.int32)


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
"""Range the log standard deviation of :class:`TanhGaussian` is clipped to."""
_ATANH_EDGE = 1.0 - 1e-6
"""``from_env`` clips ``tanh`` values to ``±_ATANH_EDGE`` so ``atanh`` stays finite."""


def squash(raw: Array, low: float, high: float) -> Array:
    """``low + (tanh(raw) + 1) * (high - low) / 2``: raw Gaussian samples into the bounds."""
    return low + (jnp.tanh(raw) + 1.0) * ((high - low) / 2.0)


@flax.struct.dataclass
class TanhGaussian:
    """A diagonal Gaussian over a *raw* action ``u`` [..., A]; the environment takes
    ``a = low + (tanh(u) + 1) * (high - low) / 2``, always inside ``[low, high]``.

    Samples, ``mode`` and ``log_prob`` work on ``u`` (what PPO stores: it never has to invert a
    saturated ``tanh``); :meth:`to_env` squashes. ``log_prob`` is the density of the *squashed*
    action (Gaussian density of ``u`` minus ``log |da/du|``), so recorded behaviour
    log-probabilities are those of the actions in the vault. :meth:`entropy` is the Gaussian's
    (of ``u``): the squashed distribution has no closed form, and PPO's bonus only needs a
    monotone spread measure (as PureJaxRL's and Mava's continuous PPO do).
    """

    mean: Array  # [..., A] float32
    log_std: Array  # [..., A] float32 (broadcast to mean's shape)
    low: float = flax.struct.field(pytree_node=False, default=-1.0)
    high: float = flax.struct.field(pytree_node=False, default=1.0)

    def sample(self, key: Array) -> Array:
        """[..., A] float32 raw sample ``u``."""
        return self.mean + jnp.exp(self.log_std) * jax.random.normal(key, self.mean.shape)

    def mode(self) -> Array:
        """[..., A] the mean (its squash is the most likely action's neighbourhood centre)."""
        return self.mean

    def log_prob(self, raw: Array) -> Array:
        """[...] float32 log-density of the squashed action of ``raw`` [..., A]."""
        z = (raw - self.mean) * jnp.exp(-self.log_std)
        gauss = -0.5 * jnp.square(z) - self.log_std - 0.5 * math.log(2.0 * math.pi)
        # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable for large |u|
        log_det = 2.0 * (math.log(2.0) - raw - jax.nn.softplus(-2.0 * raw))
        log_det = log_det + math.log((self.high - self.low) / 2.0)
        return jnp.sum(gauss - log_det, axis=-1)

    def entropy(self) -> Array:
        """[...] float32 entropy of the Gaussian over ``u``."""
        return jnp.sum(self.log_std + 0.5 * math.log(2.0 * math.pi * math.e), axis=-1)

    def to_env(self, raw: Array) -> Array:
        """[..., A] float32 action inside ``[low, high]``."""
        return squash(raw, self.low, self.high)

    def from_env(self, action: Array) -> Array:
        """Raw ``u`` of an environment action (bounds clipped a hair inward)."""
        unit = (action - self.low) * (2.0 / (self.high - self.low)) - 1.0
        return jnp.arctanh(jnp.clip(unit, -_ATANH_EDGE, _ATANH_EDGE))


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


class GaussianActor(nn.Module):
    """Continuous policy head: [..., F] -> (mean [..., A], log_std [..., A]).

    The log-std is one learned vector per action component, independent of the input
    (state-independent, as in PPO's original continuous-control setup), initialised to
    ``log_std_init`` and clipped to ``[LOG_STD_MIN, LOG_STD_MAX]``.
    """

    action_dim: int
    hidden: Sequence[int] = (128, 128)
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        mean = _dense(self.action_dim, 0.01)(MLPTorso(self.hidden)(x))
        log_std = self.param(
            "log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,)
        )
        log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        return mean, jnp.broadcast_to(log_std, mean.shape)


@dataclass(frozen=True)
class ActionSpace:
    """An environment's action space as the policy sees it.

    Discrete: ``dim`` actions, policy outputs are logits, actions ``[...]`` int32, with a legal
    mask. Continuous: ``dim`` components in ``[low, high]``, policy outputs are
    ``(mean, log_std)``, actions ``[..., dim]`` float32, no mask (the ``legal`` argument is
    ignored).
    """

    dim: int
    continuous: bool = False
    low: float = -1.0
    high: float = 1.0

    @classmethod
    def of(cls, spec: Any) -> ActionSpace:
        """From an :class:`marlvault.envs.base.EnvSpec`."""
        return cls(spec.action_dim, spec.continuous, spec.action_low, spec.action_high)

    def actor(self, hidden: Sequence[int]) -> nn.Module:
        """The policy head for this space."""
        return GaussianActor(self.dim, hidden) if self.continuous else Actor(self.dim, hidden)

    def distribution(self, out: Any, legal: Array) -> MaskedCategorical | TanhGaussian:
        """The action distribution of the actor's output ``out``."""
        if self.continuous:
            mean, log_std = out
            return TanhGaussian(mean, log_std, self.low, self.high)
        return MaskedCategorical.from_logits(out, legal)

    def to_env(self, raw: Array) -> Array:
        """Environment actions of raw samples (continuous: squashed; discrete: unchanged)."""
        return squash(raw, self.low, self.high) if self.continuous else raw

    def uniform_raw(self, key: Array, legal: Array) -> Array:
        """Raw samples whose environment actions are uniform (legal actions / the box)."""
        if self.continuous:
            unit = jax.random.uniform(key, legal.shape, minval=-_ATANH_EDGE, maxval=_ATANH_EDGE)
            return jnp.arctanh(unit)
        return MaskedCategorical.from_logits(jnp.zeros(legal.shape), legal).sample(key)


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

    The parameters and the arithmetic are those of ``flax.linen.GRUCell`` scanned over time with
    ``nn.scan`` (what this module was until 2026-11; same parameter names, shapes and
    initialisers, so older checkpoints load), computed in fewer, larger operations: XLA CPU runs
    a scanned loop body one small operation at a time, and the GRU's 64x64 or 128x128 products
    are small. The input products of all T steps are one matmul per gate before the loop; the
    loop holds the recurrent products only; and its backward pass (a custom VJP) carries only the
    hidden state's cotangent, emitting each step's gate cotangents, so the recurrent weights'
    gradient is one matmul after the loop instead of T small ones accumulated inside it.
    Outputs equal ``nn.scan(GRUCell)``'s to float32 rounding (tests/test_networks.py).
    """

    hidden_size: int = 128

    @nn.compact
    def __call__(self, h: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array]:
        x, reset = inputs
        weights = _GRUWeights(self.hidden_size, name="Scan_ResetGRU_0")(x.shape[-1])
        return gru_over_time(weights, h, x, reset)

    @staticmethod
    def initialize_carry(batch_shape: tuple[int, ...], hidden_size: int) -> Array:
        """Zeros [*batch_shape, hidden_size] float32."""
        return jnp.zeros((*batch_shape, hidden_size), jnp.float32)


_GATES = (("ir", "hr"), ("iz", "hz"), ("in", "hn"))
"""``flax.linen.GRUCell``'s dense layers: (input, recurrent) for the reset, update and new gates."""


class _GRUWeights(nn.Module):
    """``flax.linen.GRUCell``'s parameters where ``nn.scan`` put them (``GRUCell_0`` inside this
    module, named ``Scan_ResetGRU_0`` by its parent): ``{name: (kernel [in, H], bias [H] or
    None)}`` for ``ir, iz, in`` (input, with bias), ``hr, hz`` (recurrent, no bias), ``hn``
    (recurrent, with bias)."""

    hidden_size: int

    @nn.compact
    def __call__(self, in_features: int) -> dict:
        return _GRUCellWeights(self.hidden_size, name="GRUCell_0")(in_features)


class _GRUCellWeights(nn.Module):
    hidden_size: int

    @nn.compact
    def __call__(self, in_features: int) -> dict:
        defaults = {k: f.default for k, f in nn.GRUCell.__dataclass_fields__.items()}
        size, weights = self.hidden_size, {}
        for name, rows, init, bias in (  # GRUCell's order
                ("ir", in_features, "kernel_init", True), ("hr", size, "recurrent_kernel_init", False),
                ("iz", in_features, "kernel_init", True), ("hz", size, "recurrent_kernel_init", False),
                ("in", in_features, "kernel_init", True), ("hn", size, "recurrent_kernel_init", True)):
            weights[name] = _DenseWeights(rows, size, defaults[init],
                                          defaults["bias_init"] if bias else None, name=name)()
        return weights


class _DenseWeights(nn.Module):
    """The parameters ``flax.linen.Dense`` makes (``kernel`` [rows, features], ``bias``)."""

    rows: int
    features: int
    kernel_init: Any
    bias_init: Any  # None: no bias

    @nn.compact
    def __call__(self) -> tuple[Array, Array | None]:
        kernel = self.param("kernel", self.kernel_init, (self.rows, self.features), jnp.float32)
        bias = None
        if self.bias_init is not None:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return kernel, bias


def gru_over_time(weights: dict, h: Array, x: Array, reset: Array) -> tuple[Array, Array]:
    """``flax.linen.GRUCell`` (``weights`` as :class:`_GRUWeights` gives them) over time:
    ``h [B..., H]``, ``x [T, B..., F]``, ``reset [T, B...]`` -> ``(h [B..., H], y [T, B..., H])``,
    the carry zeroed before each step where ``reset`` is True."""
    steps, batch_shape, size = x.shape[0], h.shape[:-1], h.shape[-1]
    rows = math.prod(batch_shape)
    x2 = x.reshape(steps * rows, x.shape[-1])
    xr, xz, xn = ((x2 @ weights[i][0] + weights[i][1]).reshape(steps, rows, size)
                  for i, _ in _GATES)
    (whr, _), (whz, _), (whn, bhn) = (weights[r] for _, r in _GATES)
    h, y = _gru_recurrence(whr, whz, whn, bhn, xr, xz, xn, reset.reshape(steps, rows),
                           h.reshape(rows, size))
    return h.reshape(*batch_shape, size), y.reshape(steps, *batch_shape, size)


def _gru_loop(whr, whz, whn, bhn, xr, xz, xn, reset, h):
    """The recurrence; per step the output and what the backward pass needs (the carry after
    the reset, r, z, n and the new gate's recurrent term)."""

    def step(h, inputs):
        ar, az, an, first = inputs
        h = jnp.where(first[:, None], jnp.zeros_like(h), h)
        r = jax.nn.sigmoid(ar + h @ whr)
        z = jax.nn.sigmoid(az + h @ whz)
        hn = h @ whn + bhn
        n = jnp.tanh(an + r * hn)
        new = (1.0 - z) * n + z * h
        return new, (new, (h, r, z, n, hn))

    return jax.lax.scan(step, h, (xr, xz, xn, reset))


@jax.custom_vjp
def _gru_recurrence(whr, whz, whn, bhn, xr, xz, xn, reset, h):
    """``(h_T, y)`` of the GRU recurrence given the input terms ``x{r,z,n} [T, R, H]`` (biases
    included), ``reset [T, R]``, ``h [R, H]``."""
    h, (y, _) = _gru_loop(whr, whz, whn, bhn, xr, xz, xn, reset, h)
    return h, y


def _gru_recurrence_fwd(whr, whz, whn, bhn, xr, xz, xn, reset, h):
    h, (y, saved) = _gru_loop(whr, whz, whn, bhn, xr, xz, xn, reset, h)
    return (h, y), (whr, whz, whn, reset, saved)


def _gru_recurrence_bwd(residuals, cotangents):
    whr, whz, whn, reset, saved = residuals
    dh_last, dy = cotangents
    whr_t, whz_t, whn_t = whr.T, whz.T, whn.T

    def step(dh, inputs):
        dy_t, first, h, r, z, n, hn = inputs
        dh = dh + dy_t
        dn = dh * (1.0 - z) * (1.0 - n * n)  # through tanh: the new gate's pre-activation
        dz = dh * (h - n) * (z * (1.0 - z))
        dhn = dn * r
        dr = dn * hn * (r * (1.0 - r))
        dprev = dh * z + dr @ whr_t + dz @ whz_t + dhn @ whn_t
        return jnp.where(first[:, None], jnp.zeros_like(dprev), dprev), (dr, dz, dn, dhn)

    dh0, (dr, dz, dn, dhn) = jax.lax.scan(step, dh_last, (dy, reset, *saved), reverse=True)
    size = dr.shape[-1]
    h_before = saved[0].reshape(-1, size)
    # the three recurrent weights' gradients as one [H, 3H] product over all steps and rows
    dw = h_before.T @ jnp.concatenate([dr, dz, dhn], -1).reshape(-1, 3 * size)
    dwhr, dwhz, dwhn = dw[:, :size], dw[:, size:2 * size], dw[:, 2 * size:]
    return dwhr, dwhz, dwhn, dhn.reshape(-1, size).sum(0), dr, dz, dn, None, dh0


_gru_recurrence.defvjp(_gru_recurrence_fwd, _gru_recurrence_bwd)


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


class RecurrentNetwork(nn.Module):
    """MLP torso -> GRU -> ``head``:
    ``(h [B, ..., H], (x [T, B, ..., F], reset [T, B, ...])) -> (h, head(y [T, B, ..., H]))``.

    The head is any module on the GRU's output: an :class:`ActionSpace` actor (logits, or mean
    and log-std; its own torso is the MLP after the GRU) or a :class:`Critic` (values). Its
    parameters live under ``head``.
    """

    head: nn.Module
    hidden: Sequence[int] = (128,)
    rnn_size: int = 128

    def __call__(self, h: Array, inputs: tuple[Array, Array]) -> tuple[Array, Any]:
        h, _, out = self.sequence(h, inputs)
        return h, out

    @nn.compact
    def sequence(self, h: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array, Any]:
        """``(h, y [T, B, ..., H], head(y))``: also the GRU state after each step (``y[t]``,
        the carry step ``t + 1`` starts from before its reset), same parameters."""
        x, reset = inputs
        h, y = ScannedRNN(self.rnn_size)(h, (MLPTorso(self.hidden)(x), reset))
        return h, y, self.head(y)
