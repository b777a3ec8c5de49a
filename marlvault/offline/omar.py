"""OMAR: offline multi-agent RL with actor rectification (Pan et al. 2022), continuous actions.

Independent CQL critics as IDDPG+CQL (``iddpg_cql.py``: twin feed-forward ``Q_k(o_i, a_i)``,
continuous CQL on both, Polyak targets, recurrent tanh actor), with the actor *rectified* by a
zeroth-order search of the first critic: for every agent and step an iterative sampling search
(cross-entropy style) looks for a better action than the actor's, and the actor is pulled to the
best action found besides following the critic's gradient. In unit actions (``[-1, 1]^A``)::

    mu^0 = 0, sigma^0 = search_sigma                              (per action component)
    for j = 1 .. search_iters:
        candidates = search_samples actions clip(mu + sigma eps, -1, 1), eps ~ N(0, I),
                     plus the previous iteration's elites
        elites     = the search_elites candidates of highest Q_1(o, .)
        mu, sigma  = mean and std of the elites
    a_hat  = the best elite if its Q_1 beats Q_1(o, mu(o)), else mu(o)      (no gradient)
    actor  = coe * mean (mu(o) - a_hat)^2 - (1 - coe) * mean Q_1(o, mu(o))

``coe`` is the paper's tau (0.7). The critic loss is IDDPG+CQL's.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from marlvault.config import MAX_PARALLEL, require, require_range
from marlvault.offline.actor_critic import (
    Parts,
    QFn,
    TrainState,
    actor_critic_algorithm,
    independent_features,
    over_samples,
)
from marlvault.offline.common import Algorithm, AlgorithmEntry, DataNeeds, masked_mean
from marlvault.offline.dataset import DataSpec
from marlvault.offline.iddpg_cql import CQLConfig, cql_parts

Array = jax.Array


@dataclass(frozen=True)
class Config(CQLConfig):
    """Hyper-parameters of OMAR (IDDPG+CQL's plus the actor rectification's)."""

    coe: float = 0.7
    """Weight of the pull to the searched action (the paper's tau); 1 - coe weighs the critic."""
    search_iters: int = 3
    """Iterations of the zeroth-order search."""
    search_samples: int = 10
    """Actions sampled per iteration."""
    search_elites: int = 10
    """Best candidates kept per iteration (at most search_samples)."""
    search_sigma: float = 2.0
    """Std of the first iteration's Gaussian (mean 0, unit actions)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "coe", lo=0.0, hi=1.0)
        require_range("system", self, "search_iters", "search_samples", "search_elites", lo=1,
                      hi=MAX_PARALLEL)
        require_range("system", self, "search_sigma", lo=0.0, hi=100.0, lo_open=True)
        require("system.search_elites", self.search_elites,
                self.search_elites <= self.search_samples,
                f"at most system.search_samples ({self.search_samples})",
                f"system.search_elites={self.search_samples}")


def zeroth_order_search(q: QFn, key: Array, shape: tuple[int, ...], iters: int, samples: int,
                        elites: int, sigma: float) -> tuple[Array, Array]:
    """Iterative sampling search of the best unit action under ``q`` (OMAR's actor
    rectification): Gaussian samples from ``N(0, sigma^2)``, refitted to the best ``elites``
    candidates (new samples plus the previous elites) ``iters`` times.

    Args:
        q: values of a batch of actions, [M, *shape] -> [M, *shape[:-1]].
        key: PRNG key; iteration ``j`` samples with ``jax.random.split(key, iters)[j]``.
        shape: [..., A] of one action per searched point.
        iters, samples, elites, sigma: as :class:`Config`'s ``search_*``.

    Returns:
        the best candidate [..., A] and its value [...].
    """
    mu, std = jnp.zeros(shape), jnp.full(shape, sigma)
    pool_a = pool_q = None
    for k in jax.random.split(key, iters):
        cand = jnp.clip(mu + std * jax.random.normal(k, (samples, *shape)), -1.0, 1.0)
        val = q(cand)  # [M, ...]
        if pool_a is not None:
            cand, val = jnp.concatenate([cand, pool_a]), jnp.concatenate([val, pool_q])
        top, idx = jax.lax.top_k(jnp.moveaxis(val, 0, -1), elites)  # [..., E], best first
        best = jnp.take_along_axis(jnp.moveaxis(cand, 0, -2), idx[..., None], axis=-2)
        pool_a, pool_q = jnp.moveaxis(best, -2, 0), jnp.moveaxis(top, -1, 0)
        mu, std = jnp.mean(best, axis=-2), jnp.std(best, axis=-2)
    return pool_a[0], pool_q[0]


def omar_actor_loss(pi: Array, q1_pi: Array, searched: Array, searched_q: Array, mask: Array,
                    coe: float) -> tuple[Array, dict]:
    """OMAR's rectified actor loss ``coe mean (mu(o) - a_hat)^2 - (1 - coe) mean Q_1(o, mu(o))``.

    Args:
        pi: [L, K, N, A] the actor's unit actions (with gradient).
        q1_pi: [L, K, N] the first critic's Q of them.
        searched: [L, K, N, A] the best searched action; ``searched_q`` [L, K, N] its Q.
        mask: [L, K] steps inside the episode.
        coe: weight of the pull to ``a_hat``.
    """
    better = (searched_q > jax.lax.stop_gradient(q1_pi))[..., None]
    target = jax.lax.stop_gradient(jnp.where(better, searched, pi))
    m = mask[..., None]
    pull = masked_mean(jnp.mean(jnp.square(pi - target), axis=-1), m)
    q_term = masked_mean(q1_pi, m)
    loss = coe * pull - (1.0 - coe) * q_term
    return loss, {"actor_loss": loss, "rectify_loss": pull,
                  "searched_better": masked_mean(better[..., 0].astype(jnp.float32), m)}


def parts(config: Config) -> Parts:
    """IDDPG+CQL's critic regulariser with OMAR's actor objective."""
    base = cql_parts(config, independent_features)

    def objective(pi: Array, q_fn: QFn, data: Array, mask: Array, key: Array):
        del data
        q1 = lambda a: over_samples(q_fn, a)[:, 0]  # noqa: E731  [M, L, K, N, A] -> [M, L, K, N]
        searched, searched_q = zeroth_order_search(
            q1, key, pi.shape, config.search_iters, config.search_samples, config.search_elites,
            config.search_sigma)
        return omar_actor_loss(pi, q_fn(pi)[0], searched, searched_q, mask, config.coe)

    return base._replace(actor_objective=objective)


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps; continuous actions only; no global state."""
    return DataNeeds(config.seq_len, 0, False, continuous_ok=True, discrete_ok=False)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The OMAR bundle the offline trainer runs."""
    return actor_critic_algorithm("omar", config, spec, parts(config))


ENTRY = AlgorithmEntry("omar", Config, data_needs, make_algorithm,
                       "OMAR: independent CQL critics, actor rectified by zeroth-order search; "
                       "continuous actions.")

__all__ = ["ENTRY", "Config", "TrainState", "data_needs", "make_algorithm", "omar_actor_loss",
           "parts", "zeroth_order_search"]
