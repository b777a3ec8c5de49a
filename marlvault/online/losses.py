"""PPO's pure functions: GAE, the clipped loss and the network inputs (no state, no envs).

Axis order: ``[time, env, agent, ...]`` (``T``, ``B``, ``N``); tests import these directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from marlvault.envs.base import Array
from marlvault.envs.wrappers import add_agent_ids

if TYPE_CHECKING:
    from marlvault.online.ippo import Networks, Params, SystemConfig, Transition


class Batch(NamedTuple):
    """Training samples, leading axes ``[T, B]`` (or a minibatch of them)."""

    actor_in: Array  # [..., N, Fa] float32
    critic_in: Array  # [..., N, Fc] float32
    legal: Array  # [..., N, A] bool
    action: Array  # [..., N] int32 (continuous: [..., N, A] float32 raw sample)
    log_prob: Array  # [..., N] float32
    value: Array  # [..., N] float32
    advantage: Array  # [..., N] float32
    target: Array  # [..., N] float32


class LossInfo(NamedTuple):
    total_loss: Array  # []
    actor_loss: Array  # []
    value_loss: Array  # []
    entropy: Array  # []
    approx_kl: Array  # []
    clip_frac: Array  # []


def compute_gae(
    r_t: Array,
    v_t: Array,
    v_tp1: Array,
    terminated_t: Array,
    done_t: Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[Array, Array]:
    """Generalised advantage estimates over a rollout.

    ``delta_t = r_t + gamma * (1 - terminated_t) * v_tp1 - v_t`` and
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``: a termination stops the
    bootstrap, any episode end (termination or truncation) stops the recursion, and at a
    truncation ``v_tp1`` must be the value of the true next observation.

    Args:
        r_t: [T, ...] float32 rewards.
        v_t: [T, ...] float32 values of the observations acted on.
        v_tp1: [T, ...] float32 values of the true next observations.
        terminated_t: [T, ...] bool/float, the step ended the episode by termination.
        done_t: [T, ...] bool/float, the step ended the episode (terminated or truncated).
        gamma: discount.
        gae_lambda: GAE lambda.

    Returns:
        (advantages, value targets), both [T, ...] float32.
    """
    not_term = 1.0 - terminated_t.astype(jnp.float32)
    not_done = 1.0 - done_t.astype(jnp.float32)
    delta = r_t + gamma * not_term * v_tp1 - v_t

    def backward(a_tp1: Array, x: tuple[Array, Array]) -> tuple[Array, Array]:
        delta_t, not_done_t = x
        a_t = delta_t + gamma * gae_lambda * not_done_t * a_tp1
        return a_t, a_t

    _, adv = jax.lax.scan(backward, jnp.zeros_like(delta[0]), (delta, not_done), reverse=True)
    return adv, adv + v_t


def ppo_loss(
    params: Params, batch: Batch, nets: Networks, system: SystemConfig, adv_stats: Array
) -> tuple[Array, LossInfo]:
    """Clipped PPO loss of one (mini)batch: policy + ``vf_coef`` * value - ``ent_coef`` * entropy.

    Args:
        params: actor and critic parameters.
        batch: samples with any leading axes.
        nets: the modules.
        system: clip_eps, ent_coef and vf_coef are read.
        adv_stats: [2] float32 mean and std used to normalise the advantages (the whole
            minibatch's, over all devices).

    Returns:
        the scalar loss and its parts (means over the local samples).
    """
    dist = nets.space.distribution(nets.actor.apply(params.actor, batch.actor_in), batch.legal)
    value = nets.critic.apply(params.critic, batch.critic_in)
    return clipped_ppo_loss(dist, value, batch, system, adv_stats)


def clipped_ppo_loss(
    dist: Any, value: Array, batch: Batch, system: SystemConfig, adv_stats: Array
) -> tuple[Array, LossInfo]:
    """PPO's loss from the current policy's distribution and value of ``batch``'s samples.

    The part of :func:`ppo_loss` after the networks ran (the recurrent learner replays its
    networks over whole sequences first, then calls this).

    Args:
        dist: the action distribution (``MaskedCategorical`` or ``TanhGaussian``) [...].
        value: [...] float32 the critic's current values.
        batch: the samples (behaviour log-probs, old values, advantages, targets).
        system: clip_eps, ent_coef and vf_coef are read.
        adv_stats: [2] float32 advantage mean and std (see :func:`ppo_loss`).
    """
    log_prob = dist.log_prob(batch.action)
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    adv = (batch.advantage - adv_stats[0]) / (adv_stats[1] + 1e-8)
    clipped = jnp.clip(ratio, 1.0 - system.clip_eps, 1.0 + system.clip_eps)
    policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
    entropy = jnp.mean(dist.entropy())

    v_clipped = batch.value + jnp.clip(value - batch.value, -system.clip_eps, system.clip_eps)
    value_loss = 0.5 * jnp.mean(
        jnp.maximum(jnp.square(value - batch.target), jnp.square(v_clipped - batch.target))
    )
    actor_loss = policy_loss - system.ent_coef * entropy
    total = actor_loss + system.vf_coef * value_loss
    info = LossInfo(
        total_loss=total,
        actor_loss=policy_loss,
        value_loss=value_loss,
        entropy=entropy,
        approx_kl=jnp.mean((ratio - 1.0) - log_ratio),
        clip_frac=jnp.mean((jnp.abs(ratio - 1.0) > system.clip_eps).astype(jnp.float32)),
    )
    return total, info


def actor_input(obs: Array, system: SystemConfig) -> Array:
    """Actor input from raw ``obs`` [..., N, O]: [..., N, O(+N)]."""
    return add_agent_ids(obs) if system.add_agent_ids else obs


def network_inputs(
    obs: Array, state: Array, system: SystemConfig
) -> tuple[Array, Array]:
    """Actor and critic inputs from raw ``obs`` [..., N, O] and ``state`` [..., S].

    Returns:
        ([..., N, O(+N)], [..., N, O(+N)] or [..., N, S(+N)] for the centralised critic).
    """
    n = obs.shape[-2]
    critic_in = obs
    if system.centralised_critic:
        critic_in = jnp.broadcast_to(state[..., None, :], (*state.shape[:-1], n, state.shape[-1]))
    if system.add_agent_ids:
        return add_agent_ids(obs), add_agent_ids(critic_in)
    return obs, critic_in


def make_batch(traj: Transition, last_value: Array, system: SystemConfig) -> Batch:
    """GAE and network inputs for a rollout ``[T, B, ...]``; ``last_value`` [B, N] is the
    critic's value after its last step."""
    next_value = jnp.concatenate([traj.value[1:], last_value[None]], axis=0)
    trunc = traj.truncated[..., None]
    v_tp1 = jnp.where(trunc, traj.final_value, next_value)
    term = jnp.broadcast_to(traj.terminated[..., None], traj.reward.shape)
    done = jnp.broadcast_to((traj.terminated | traj.truncated)[..., None], traj.reward.shape)
    adv, target = compute_gae(
        traj.reward, traj.value, v_tp1, term, done, system.gamma, system.gae_lambda
    )
    actor_in, critic_in = network_inputs(traj.obs, traj.state, system)
    return Batch(
        actor_in, critic_in, traj.legal, traj.action, traj.log_prob, traj.value, adv, target
    )


