"""Independent DDPG with behaviour cloning (IDDPG+BC, TD3+BC per agent), continuous actions.

TD3+BC (Fujimoto & Gu 2021) for every agent independently, with the shared continuous
actor–critic of ``actor_critic.py`` (recurrent tanh actor, twin feed-forward critics
``Q_k(o_i, a_i)``, Polyak targets). In unit actions (``[-1, 1]^A``)::

    a'_{t+1} = clip(mu'(o_{t+1}) + clip(eps, -c, c), -1, 1),   eps ~ N(0, target_noise^2)
    y_t      = r_t + gamma (1 - terminal_t) min_k Q'_k(o_{t+1}, a'_{t+1})
    critic   = sum_k mean over (t, agent) with target_mask of (Q_k(o_t, a_t) - y_t)^2
    lambda   = alpha / mean |Q_1(o, mu(o))|                    (no gradient through lambda)
    actor    = -lambda mean Q_1(o, mu(o)) + mean (mu(o) - a)^2  every policy_delay updates

The BC term pulls the actor to the recorded action, the normalisation makes ``alpha`` independent
of the scale of the returns. Means run over the steps inside the episode (and, for the squared
error, the action components).

**Observation normalisation** (TD3+BC's, ``normalise_obs=True``; OG-MARL's IDDPG+BC has none).
Every network input, and the policy when it acts, sees the raw observation features as::

    o'_{i,k} = (o_{i,k} - mean_{i,k}) / (std_{i,k} + 1e-3)      mean, std: [N, O]

with the mean and (population) std of feature ``k`` of agent ``i`` over the dataset's valid steps
(:meth:`~marlvault.offline.dataset.OfflineDataset.obs_stats`; padding never counts); appended
agent ids stay 0/1. The statistics enter the train state (``TrainState.obs_norm``, which no
optimiser touches) and the acting parameters ``{"actor": ..., "obs_norm": {"mean", "std"}}`` that
checkpoints hold, so a restored policy normalises as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from marlvault.config import MAX_PARALLEL, require_range
from marlvault.offline.actor_critic import (
    ActorCriticConfig,
    Parts,
    QFn,
    TrainState,
    actor_critic_algorithm,
    independent_features,
)
from marlvault.offline.common import Algorithm, AlgorithmEntry, DataNeeds, masked_mean
from marlvault.offline.dataset import DataSpec

Array = jax.Array


@dataclass(frozen=True)
class Config(ActorCriticConfig):
    """Hyper-parameters of IDDPG+BC (TD3+BC's defaults)."""

    alpha: float = 2.5
    """TD3+BC's alpha: weight of the Q term relative to the BC term (lambda = alpha / mean|Q|)."""
    target_noise: float = 0.2
    """Std of the target policy smoothing noise (unit actions)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    policy_delay: int = 2
    """Actor and target updates every this many critic updates."""
    normalise_obs: bool = True
    """TD3+BC's observation normalisation: actor and critics (and acting) see every raw
    observation feature as (o - mean) / (std + 1e-3), mean and std per agent over the dataset's
    valid steps, saved with the policy; false: raw observations (OG-MARL's IDDPG+BC)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "alpha", "target_noise", "noise_clip", lo=0.0)
        require_range("system", self, "policy_delay", lo=1, hi=MAX_PARALLEL)


def td3_bc_actor_loss(pi: Array, q1: Array, data: Array, mask: Array,
                      alpha: float) -> tuple[Array, dict]:
    """TD3+BC's actor loss ``-lambda mean Q_1(o, mu(o)) + mean (mu(o) - a)^2``,
    ``lambda = alpha / mean |Q_1(o, mu(o))|`` (no gradient through lambda).

    Args:
        pi: [L, K, N, A] the actor's unit actions.
        q1: [L, K, N] the first critic's Q of them.
        data: [L, K, N, A] recorded unit actions.
        mask: [L, K] steps inside the episode.
        alpha: TD3+BC's alpha.
    """
    m = mask[..., None]
    lam = alpha / jnp.maximum(jax.lax.stop_gradient(masked_mean(jnp.abs(q1), m)), 1e-6)
    q_term = masked_mean(q1, m)
    bc = masked_mean(jnp.mean(jnp.square(pi - data), axis=-1), m)
    loss = -lam * q_term + bc
    return loss, {"actor_loss": loss, "bc_loss": bc, "lambda": lam}


def parts(config: Config) -> Parts:
    """IDDPG+BC's pieces of the shared update."""

    def objective(pi: Array, q_fn: QFn, data: Array, mask: Array, key: Array):
        del key
        return td3_bc_actor_loss(pi, q_fn(pi)[0], data, mask, config.alpha)

    return Parts(independent_features, None, objective, config.target_noise, config.noise_clip,
                 config.policy_delay, config.normalise_obs)


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps; continuous actions only; no global state;
    the observation statistics when it normalises observations."""
    return DataNeeds(config.seq_len, 0, False, continuous_ok=True, discrete_ok=False,
                     obs_stats=config.normalise_obs)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The IDDPG+BC bundle the offline trainer runs."""
    return actor_critic_algorithm("iddpg-bc", config, spec, parts(config))


ENTRY = AlgorithmEntry("iddpg-bc", Config, data_needs, make_algorithm,
                       "Independent DDPG + BC (TD3+BC per agent), continuous actions.")

__all__ = ["ENTRY", "Config", "TrainState", "data_needs", "make_algorithm", "parts",
           "td3_bc_actor_loss"]
