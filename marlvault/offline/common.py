"""Pieces every offline algorithm shares: the registry entry, the algorithm bundle, masked means,
recurrent acting and the jitted scan.

Every algorithm module (``bc.py``, ``iql_cql.py``, ``qmix_cql.py``, ``*_bcq.py``, the continuous
``iddpg_*.py``, ``maddpg_cql.py``, ``omar.py``) ends with
``ENTRY = AlgorithmEntry(name, Config, data_needs, make_algorithm)``: what its run config's
``system`` section is, which windows (and whether the global state) it trains on, and how to
build its :class:`Algorithm` bundle. The trainer (``offline/train.py``) only talks to the entry
and the bundle, so it runs any algorithm in memory (sampling inside one ``lax.scan``) or
streaming (host batches fed to a jitted update).

Axis order inside the learner: ``[time, batch, agent, ...]``; when acting, ``[env, agent, ...]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from marlvault.config import (
    INT32_MAX,
    MAX_BATCH_STEPS,
    MAX_PARALLEL,
    MAX_WIDTH,
    require,
    require_range,
)
from marlvault.networks import ILLEGAL_LOGIT, ScannedRNN
from marlvault.offline.dataset import DatasetConfig, DataSpec, DeviceData, SequenceBatch

Array = jax.Array


class DataNeeds(NamedTuple):
    """What an algorithm config needs from the dataset, known before the vault is read."""

    seq_len: int  # L of the windows it trains on (1 = transitions)
    stride: int  # steps between window starts (0 = seq_len)
    need_state: bool  # the vault must hold the global state ``infos.state``
    continuous_ok: bool = False  # it learns from continuous actions (B, T, N, A) too
    discrete_ok: bool = True  # it learns from discrete actions (B, T, N) (False: continuous only)
    obs_stats: bool = False  # it needs the observation statistics (DataSpec.obs_stats)
    next_step: bool = True  # it reads each window's inputs one step past its end (DataSpec)

    def dataset_config(self, **options: Any) -> DatasetConfig:
        """The :class:`DatasetConfig` of these windows, with the other ``options`` (mode, ...)."""
        return DatasetConfig(seq_len=self.seq_len, stride=self.stride, need_state=self.need_state,
                             continuous_ok=self.continuous_ok, next_step=self.next_step,
                             **options)


class Algorithm(NamedTuple):
    """An offline algorithm as a bundle of pure functions."""

    name: str
    seq_len: int  # L of the windows it trains on (1 = transitions)
    stride: int  # steps between window starts (0 = seq_len)
    batch_size: int  # K windows per update
    init: Callable[[Array], Any]  # key -> TrainState
    update: Callable[[Any, SequenceBatch], tuple[Any, dict]]  # (state, batch) -> (state, metrics)
    params: Callable[[Any], Any]  # TrainState -> acting parameters
    init_hidden: Callable[[int], Any]  # num_envs -> acting carry
    act: Callable[..., tuple[Any, Array]]  # (params, hidden, obs, legal, reset, key=None) -> (hidden, a)


class AlgorithmEntry(NamedTuple):
    """One offline algorithm as the trainer's registry sees it (``ENTRY`` of its module)."""

    name: str  # command-line name, e.g. "iql-cql"
    config: type  # its frozen ``Config`` dataclass: the run config's ``system`` section
    data_needs: Callable[[Any], DataNeeds]  # config -> windows and state it trains on
    make: Callable[[Any, DataSpec], Algorithm]  # (config, spec) -> the bundle
    summary: str = ""  # one line for ``marlvault offline train --help``


def check_learner_sizes(config: Any, batch_steps: int) -> None:
    """The sizes every offline ``system`` section shares, in range.

    Args:
        config: the algorithm's config (``hidden``, ``rnn_size``, ``seq_len``, ``batch_size``,
            ``num_updates``).
        batch_steps: time steps in one update's batch (windows x window length).

    Raises:
        ConfigError: naming the first field out of range.
    """
    ok = bool(config.hidden) and all(1 <= n <= MAX_WIDTH for n in config.hidden)
    require("system.hidden", config.hidden, ok, f"one or more layer sizes in [1, {MAX_WIDTH}]",
            "system.hidden=128,128")
    require_range("system", config, "rnn_size", lo=1, hi=MAX_WIDTH)
    require_range("system", config, "seq_len", "batch_size", lo=1, hi=MAX_PARALLEL)
    require_range("system", config, "num_updates", lo=1, hi=INT32_MAX)  # Adam's int32 count
    per_item = max(1, batch_steps // config.batch_size)
    require("system.batch_size", config.batch_size, batch_steps <= MAX_BATCH_STEPS,
            f"a batch of at most {MAX_BATCH_STEPS} steps ({per_item} per batch item)",
            f"system.batch_size={max(1, MAX_BATCH_STEPS // per_item)}")


def masked_mean(x: Array, mask: Array) -> Array:
    """Mean of ``x`` over the entries where ``mask`` is 1 (0 when the mask is empty)."""
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def mask_illegal(values: Array, legal: Array) -> Array:
    """Puts ``ILLEGAL_LOGIT`` on illegal actions: [..., A] values, [..., A] 0/1 legal."""
    return jnp.where(legal > 0, values, ILLEGAL_LOGIT)


def greedy(values: Array, legal: Array) -> Array:
    """[...] int32 best legal action of [..., A] values."""
    return jnp.argmax(mask_illegal(values, legal), axis=-1).astype(jnp.int32)


def choose(values: Array, legal: Array, key: Array | None = None) -> Array:
    """[...] int32 legal action of [..., A] values: the best one, or with ``key`` one sampled
    from the softmax over legal actions (the policy itself for BC's logits; Boltzmann over
    Q-values for the Q-learners)."""
    if key is None:
        return greedy(values, legal)
    return jax.random.categorical(key, mask_illegal(values, legal), axis=-1).astype(jnp.int32)


def window_resets(length: int, batch_shape: tuple[int, ...]) -> Array:
    """[length, *batch_shape] bool: True at position 0 only (windows hold one episode)."""
    first = jnp.arange(length) == 0
    return jnp.broadcast_to(first.reshape(length, *([1] * len(batch_shape))),
                            (length, *batch_shape))


def make_scan_train(algo: Algorithm, sample: Callable[[DeviceData, Array], SequenceBatch],
                    num_updates: int) -> Callable[[Any, DeviceData, Array], tuple[Any, dict]]:
    """``run(state, data, key) -> (state, metrics)``: ``num_updates`` updates in one scan.

    Sampling happens inside the scan, so the whole call is one jitted program; metrics are
    averaged over the updates.
    """

    def run(state: Any, data: DeviceData, key: Array) -> tuple[Any, dict]:
        def body(carry: Any, step_key: Array) -> tuple[Any, dict]:
            return algo.update(carry, sample(data, step_key))

        state, metrics = jax.lax.scan(body, state, jax.random.split(key, num_updates))
        return state, jax.tree.map(jnp.mean, metrics)

    return run


def gru_sequence(net: Any, params: Any, obs: Array, rnn_size: int) -> Array:
    """Outputs of a :class:`~marlvault.networks.GRUActionNetwork` along windows started from a
    zero GRU state: obs [L, K, N, O'] -> [L, K, N, A]."""
    length, k, n = obs.shape[:3]
    h0 = ScannedRNN.initialize_carry((k, n), rnn_size)
    _, out = net.apply(params, h0, (obs, window_resets(length, (k, n))))
    return out


def init_gru_network(net: Any, key: Array, spec: DataSpec, rnn_size: int) -> Any:
    """Parameters of a :class:`~marlvault.networks.GRUActionNetwork` for ``spec``'s inputs."""
    n = spec.num_agents
    h0 = ScannedRNN.initialize_carry((1, n), rnn_size)
    x = jnp.zeros((1, 1, n, spec.input_dim))
    return net.init(key, h0, (x, jnp.zeros((1, 1, n), bool)))


def gru_act(net: Any, params: Any, hidden: Array, obs: Array, legal: Array, reset: Array,
            key: Array | None = None) -> tuple[Array, Array]:
    """One acting step of a GRU network: obs [E, N, O'], legal [E, N, A], reset [E] ->
    (hidden [E, N, H], actions [E, N]), greedy or sampled (see :func:`choose`)."""
    resets = jnp.broadcast_to(reset[:, None], obs.shape[:2])[None]
    hidden, out = net.apply(params, hidden, (obs[None], resets))
    return hidden, choose(out[0], legal, key)


def gradient_step(tx: optax.GradientTransformation, loss_fn: Callable[[Any], tuple[Array, dict]],
                  params: Any, opt_state: Any) -> tuple[Any, Any, dict]:
    """One optimiser step on ``loss_fn(params) -> (loss, metrics)``:
    ``(params, opt_state, metrics)`` after the step."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics
