"""Multi-agent implicit constraint Q-learning (MAICQ), recurrent, discrete actions, global state.

ICQ (Yang et al. 2021, "Believe What You See: Implicit Constraint Approach for Offline
Multi-Agent Reinforcement Learning") evaluates the policy only on state-action pairs the data
holds. The expectation over the learnt policy in the Bellman target is rewritten as an
expectation over the behaviour policy with the importance ratio ``pi / mu = exp(Q / alpha) / Z``,
and ``Z`` is estimated over the mini-batch, so no action outside the data is ever queried::

    critic   Q_tot(s, q(a)) = QMIX mixer of the agents' Q_i(o_i, a_i) on the global state
    w_{t+1}  = exp(Q'_tot(t+1) / alpha) / mean_batch exp(Q'_tot / alpha)   (recorded a_{t+1})
    v_{t+1}  = w_{t+1} Q'_tot(s_{t+1}, q'(a_{t+1}))
    G_t      = mean_agents(r_t) + gamma (1 - terminal_t) (v_{t+1} + lambda (G_{t+1} - v_{t+1}))
    critic   = mean over steps with target_mask of (Q_tot(s_t, q(a_t)) - G_t)^2

``'`` marks the target networks (Polyak copies). Each agent's policy ``pi_i`` (a second GRU
network, shared by the agents) is advantage-weighted behaviour cloning::

    A_i      = Q_i(o_i, a_i) - sum_a pi_i(a | o_i) Q_i(o_i, a)
    k_i      = (d Q_tot / d Q_i) / sum_j (d Q_tot / d Q_j)  at the recorded actions
               (agent i's share of the mixer's slope: >= 0, summing to 1 over the agents)
    u_i      = exp(k_i A_i / beta) / mean_batch exp(k_i A_i / beta)        (per agent)
    actor    = - mean over steps in the episode and agents of u_i log pi_i(a_i | o_i)
    loss     = critic + actor

The weights ``w`` and ``u`` carry no gradient and average 1 over the batch's valid entries
(:func:`batch_weights`). The ``lambda``-return is cut where its next step has no target
(``target_mask == 0``) and at the window's end, where the bootstrap value stands alone. Where the
next recorded action is not in the window (its last step; a truncation with a recorded next
observation) the bootstrap is the target critic's value of the policy instead,
``Q'_tot(s_{t+1}, sum_a pi_i(a) Q'_i(o_{t+1}, a))``, with weight 1. A terminal stops the
bootstrap, a truncation does not, and steps whose next observation is unknown give no TD error.
Acting is greedy over the policy's legal actions (``arch.eval_greedy=false`` samples from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from marlvault.config import MAX_WIDTH, require_range
from marlvault.networks import GRUActionNetwork
from marlvault.offline import value
from marlvault.offline.common import (
    Algorithm,
    AlgorithmEntry,
    DataNeeds,
    mask_illegal,
    masked_mean,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch
from marlvault.offline.qmix_cql import (
    QMixer,
    init_with_second_network,
    make_mixer,
    require_state,
)
from marlvault.offline.value import RecurrentQConfig, TrainState
from marlvault.optim import make_optimiser

Array = jax.Array


@dataclass(frozen=True)
class Config(RecurrentQConfig):
    """Hyper-parameters of MAICQ (the shared recurrent Q-learner's, for the critic and the
    policy network alike, plus the mixer's and ICQ's)."""

    alpha: float = 1000.0
    """Critic temperature: importance weights exp(Q_tot / alpha) of the recorded next actions."""
    beta: float = 0.1
    """Actor temperature: weights exp(k_i A_i / beta) of the recorded actions."""
    td_lambda: float = 0.75
    """Lambda of the critic's lambda-return (0: one-step targets)."""
    mixer_embed: int = 32
    """Width of the mixing network's hidden layer."""
    hyper_hidden: int = 64
    """Width of the hyper-networks' hidden layer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("system", self, "alpha", "beta", lo=0.0, lo_open=True)
        require_range("system", self, "td_lambda", lo=0.0, hi=1.0)
        require_range("system", self, "mixer_embed", "hyper_hidden", lo=1, hi=MAX_WIDTH)


Mix = Callable[[Array, Array], Array]
"""A mixer with its parameters bound: ``(q [..., N], state [..., S]) -> Q_tot [...]``."""


class Nets(NamedTuple):
    agent: GRUActionNetwork  # the critic's and the policy's architecture
    mixer: QMixer


def batch_weights(x: Array, valid: Array) -> Array:
    """``exp(x) / mean exp(x)`` over the valid entries of the two leading (time, batch) axes,
    separately for every trailing index; 0 where ``valid`` is 0; no gradient.

    The mini-batch estimate of ICQ's normaliser ``Z``: the weights of the valid entries average 1.

    Args:
        x: [L, K, ...] float32 log-weights (``Q / alpha`` or ``k A / beta``).
        valid: [L, K, ...] (broadcastable) 0/1, the entries that count.
    """
    valid = jnp.broadcast_to(valid, x.shape) > 0
    x = jnp.where(valid, jax.lax.stop_gradient(x), -jnp.inf)
    top = jnp.max(x, axis=(0, 1), keepdims=True)
    e = jnp.where(valid, jnp.exp(x - jnp.where(jnp.isfinite(top), top, 0.0)), 0.0)
    count = jnp.sum(valid, axis=(0, 1), keepdims=True)
    return e * count / jnp.maximum(jnp.sum(e, axis=(0, 1), keepdims=True), 1e-30)


def lambda_returns(rewards: Array, terminal: Array, v_next: Array, cont: Array, gamma: float,
                   lam: float) -> Array:
    """``G_t = r_t + gamma (1 - terminal_t) (v_{t+1} + lam cont_t (G_{t+1} - v_{t+1}))``.

    Args:
        rewards: [L, K] team rewards.
        terminal: [L, K] 1 where the episode terminated after the step.
        v_next: [L, K] bootstrap value of each step's next position.
        cont: [L, K] 1 where ``G_{t+1}`` may be used (the next step's own target is known); the
            last step's entry is ignored (the window ends there).
        gamma: discount.
        lam: lambda (0: one-step targets ``r + gamma (1 - terminal) v_next``).

    Returns:
        [L, K] targets (the value beyond the window is ``v_next`` of its last step).
    """
    cont = jnp.asarray(cont).at[-1].set(0.0)

    def back(g_next: Array, xs: tuple) -> tuple[Array, Array]:
        r, term, v, c = xs
        g = r + gamma * (1.0 - term) * (v + lam * c * (g_next - v))
        return g, g

    _, g = jax.lax.scan(back, jnp.zeros_like(rewards[0]), (rewards, terminal, v_next, cont),
                        reverse=True)
    return g


def policy_value(logits: Array, q: Array, legal: Array) -> tuple[Array, Array]:
    """The policy's log-probabilities over legal actions and its value ``sum_a pi(a) q(a)``:
    [..., A] x3 -> ([..., A], [...]) (the value carries no gradient)."""
    logp = jax.nn.log_softmax(mask_illegal(logits, legal), axis=-1)
    pi = jax.lax.stop_gradient(jnp.exp(logp))
    return logp, jnp.sum(pi * jax.lax.stop_gradient(q), axis=-1)


def icq_next_values(q_tot_taken: Array, q_tot_policy: Array, in_sample: Array,
                    alpha: float) -> tuple[Array, Array]:
    """Bootstrap values of every step's next position: ``w Q'_tot`` of the recorded next action
    where it is in the window (``in_sample``), else the target critic's value of the policy.

    Args:
        q_tot_taken: [L, K] ``Q'_tot(s_{t+1}, q'(a_{t+1}))`` (garbage where not in sample).
        q_tot_policy: [L, K] ``Q'_tot(s_{t+1}, sum_a pi_i(a) Q'_i(o_{t+1}, a))``.
        in_sample: [L, K] 0/1, the next recorded action belongs to the window's episode.
        alpha: critic temperature.

    Returns:
        ``(v_next, w)``, both [L, K]; ``w`` averages 1 over the in-sample entries.
    """
    w = batch_weights(q_tot_taken / alpha, in_sample)
    return jnp.where(in_sample > 0, w * q_tot_taken, q_tot_policy), w


def actor_loss(logp: Array, advantage: Array, credit: Array, actions: Array, legal: Array,
               mask: Array, beta: float) -> tuple[Array, dict]:
    """ICQ's advantage-weighted log-likelihood of the recorded actions.

    Args:
        logp: [L, K, N, A] policy log-probabilities over legal actions.
        advantage: [L, K, N] ``A_i`` of the recorded actions (no gradient).
        credit: [L, K, N] ``k_i``, the agents' shares of the mixer's slope (no gradient).
        actions: [L, K, N] int32 recorded actions.
        legal: [L, K, N, A] legal masks (recorded actions that are illegal are left out).
        mask: [L, K] 1 for steps inside the window's episode.
        beta: actor temperature.
    """
    logp_a = jnp.take_along_axis(logp, actions[..., None], axis=-1)[..., 0]
    was_legal = jnp.take_along_axis(legal, actions[..., None], axis=-1)[..., 0] > 0
    valid = mask[..., None] * was_legal
    u = batch_weights(credit * advantage / beta, valid)
    loss = -masked_mean(u * logp_a, valid)
    acc = masked_mean((jnp.argmax(logp, axis=-1) == actions).astype(jnp.float32), valid)
    return loss, {"actor_loss": loss, "actor_accuracy": acc,
                  "actor_weight_max": jnp.max(u)}


def mixer_credit(mix: Mix, q: Array, state: Array) -> Array:
    """[..., N] each agent's share of the mixer's slope at ``q`` [..., N] and ``state``
    [..., S], ``k_i = (d Q_tot / d Q_i) / sum_j (d Q_tot / d Q_j)`` (non-negative, summing to 1
    over the agents; no gradient).

    For a linear mixer ``sum_i k_i Q_i + b(s)`` with normalised ``k`` (the authors' MAICQ critic)
    these are its mixing weights.
    """
    q = jax.lax.stop_gradient(q)
    slope = jax.lax.stop_gradient(jax.grad(lambda x: jnp.sum(mix(x, state)))(q))
    return slope / jnp.maximum(jnp.sum(slope, axis=-1, keepdims=True), 1e-8)


def _taken(values: Array, actions: Array) -> Array:
    return jnp.take_along_axis(values, actions[..., None], axis=-1)[..., 0]


def maicq_loss(q_all: Array, q_tgt: Array, logits: Array, mix: Mix, mix_tgt: Mix,
               batch: SequenceBatch, config: Config) -> tuple[Array, dict]:
    """MAICQ loss of one batch of windows (time-major).

    Args:
        q_all: [L+1, K, N, A] online critic Q at every window position.
        q_tgt: [L+1, K, N, A] target critic Q.
        logits: [L+1, K, N, A] policy logits.
        mix: ``(q [..., N], state [..., S]) -> Q_tot [...]``, the online mixer.
        mix_tgt: the target mixer.
        batch: the windows (``state`` [L+1, K, S]).
        config: ``gamma``, ``td_lambda``, ``alpha``, ``beta``.
    """
    logp, v_pi = policy_value(logits, q_all, batch.legal)  # [L+1, K, N, A], [L+1, K, N]
    v_pi_tgt = jnp.sum(jax.lax.stop_gradient(jnp.exp(logp[1:])) * q_tgt[1:], axis=-1)  # [L, K, N]
    # critic: lambda-returns on the importance-weighted recorded next actions
    no_next = jnp.zeros_like(batch.mask[:1])
    next_actions = jnp.concatenate([batch.actions[1:], batch.actions[-1:]], axis=0)
    in_sample = jnp.concatenate([batch.mask[1:], no_next], axis=0)
    s_next = batch.state[1:]
    v_next, w = icq_next_values(mix_tgt(_taken(q_tgt[1:], next_actions), s_next),
                                mix_tgt(v_pi_tgt, s_next), in_sample, config.alpha)
    cont = jnp.concatenate([batch.target_mask[1:], no_next], axis=0)
    g = lambda_returns(batch.rewards.mean(axis=-1), batch.terminal, v_next, cont, config.gamma,
                       config.td_lambda)
    q_a = _taken(q_all[:-1], batch.actions)  # [L, K, N]
    q_tot = mix(q_a, batch.state[:-1])
    critic = masked_mean(jnp.square(q_tot - jax.lax.stop_gradient(g)), batch.target_mask)
    # actor: exp(k_i A_i / beta)-weighted behaviour cloning
    credit = mixer_credit(mix, q_a, batch.state[:-1])
    advantage = jax.lax.stop_gradient(q_a - v_pi[:-1])
    actor, metrics = actor_loss(logp[:-1], advantage, credit, batch.actions, batch.legal[:-1],
                                batch.mask, config.beta)
    loss = critic + actor
    return loss, {"loss": loss, "td_loss": critic, **metrics,
                  "mean_q_tot": masked_mean(q_tot, batch.mask),
                  "critic_weight_max": jnp.max(w)}


def network_loss(nets: Nets, params: dict, target_params: dict, batch: SequenceBatch,
                 config: Config) -> tuple[Array, dict]:
    """:func:`maicq_loss` of the networks: ``params`` ``{"q", "policy", "mixer"}``,
    ``target_params`` ``{"q", "mixer"}``."""
    seq = lambda p: value.q_sequence(nets.agent, p, batch.obs, config.rnn_size)  # noqa: E731
    mix = lambda q, s: nets.mixer.apply(params["mixer"], q, s)  # noqa: E731
    mix_tgt = lambda q, s: nets.mixer.apply(target_params["mixer"], q, s)  # noqa: E731
    return maicq_loss(seq(params["q"]), seq(target_params["q"]), seq(params["policy"]), mix,
                      mix_tgt, batch, config)


def _nets(config: Config, spec: DataSpec) -> Nets:
    require_state(spec, "maicq", "iql-cql or iql-bcq")
    return Nets(value.q_network(config, spec), make_mixer(config, spec))


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    nets = _nets(config, spec)

    def loss(params: dict, target_params: dict, batch: SequenceBatch) -> tuple[Array, dict]:
        return network_loss(nets, params, target_params, batch, config)

    return value.target_update(make_optimiser(config.lr, config.max_grad_norm), loss, config.tau,
                               online=value.q_and_mixer)


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState`` (``params``: ``{"q", "policy", "mixer"}``; the target holds
    the critic's ``{"q", "mixer"}``)."""
    nets, tx = _nets(config, spec), make_optimiser(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        return init_with_second_network(nets, tx, spec, config.rnn_size, key, "policy")

    return init


def data_needs(config: Config) -> DataNeeds:
    """Non-overlapping windows of ``seq_len`` steps with the global state."""
    return DataNeeds(config.seq_len, 0, True)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The MAICQ bundle the offline trainer runs: acting is the policy network's (greedy over
    legal actions, or sampled from it when the evaluator passes a key)."""
    _nets(config, spec)
    return value.q_algorithm("maicq", config, spec, make_init(config, spec),
                             make_update_step(config, spec), lambda state: state.params["policy"])


ENTRY = AlgorithmEntry("maicq", Config, data_needs, make_algorithm,
                       "Multi-agent implicit constraint Q-learning: QMIX critic on in-sample "
                       "actions, advantage-weighted recurrent policy (needs infos.state).")

__all__ = ["ENTRY", "Config", "TrainState", "actor_loss", "batch_weights", "data_needs",
           "icq_next_values", "lambda_returns", "maicq_loss", "make_algorithm", "make_init",
           "make_update_step", "mixer_credit", "network_loss", "policy_value"]
