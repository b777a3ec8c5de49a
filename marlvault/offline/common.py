"""Pieces every offline algorithm shares: the algorithm bundle, masked means, the jitted scan.

Every algorithm module (``bc.py``, ``iql_cql.py``, ``qmix_cql.py``) exposes
``make_algorithm(config, spec) -> Algorithm``; the trainer (``offline/train.py``) only talks to
that bundle, so it runs any algorithm in memory (sampling inside one ``lax.scan``) or streaming
(host batches fed to a jitted update).

Axis order inside the learner: ``[time, batch, agent, ...]``; when acting, ``[env, agent, ...]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from marlvault.networks import ILLEGAL_LOGIT
from marlvault.offline.dataset import DataSpec, DeviceData, SequenceBatch, make_sampler

Array = jax.Array


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


def make_optimizer(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    """Adam with global-norm clipping."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))


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


def make_memory_train(algo: Algorithm, spec: DataSpec, num_updates: int):
    """``train(data, key) -> (state, metrics)``: a whole in-memory run of ``algo``, one scan.

    The caller owns ``jit``/``vmap``; ``data`` comes from ``OfflineDataset.device_data()`` built
    with the algorithm's ``seq_len``.
    """
    run = make_scan_train(algo, make_sampler(spec, algo.seq_len, algo.batch_size), num_updates)

    def train(data: DeviceData, key: Array) -> tuple[Any, dict]:
        init_key, run_key = jax.random.split(key)
        return run(algo.init(init_key), data, run_key)

    return train
