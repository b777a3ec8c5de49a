"""Continuous actor–critic pieces the offline DDPG family shares (IDDPG+BC, IDDPG+CQL,
MADDPG+CQL, OMAR).

Networks, as OG-MARL's continuous baselines build them:

- **Actor** (recurrent): MLP torso -> GRU -> one output per action component -> ``tanh``; one
  network shared by all agents (agent ids in the input), run along windows that never cross an
  episode boundary, started from a zero GRU state at each window start. Its output ``u`` is a
  *unit* action in ``[-1, 1]^A``; the environment takes ``low + (u + 1) (high - low) / 2`` with
  the bounds of the vault's metadata (``DataSpec.action_low/high``).
- **Critic** (feed-forward): twin Q-networks (clipped double Q, Fujimoto et al. 2018), each an MLP
  on per-agent features built by the algorithm: ``[o_i, a_i]`` for the independent learners
  (the observation carries the agent id), ``[s, a_1 .. a_N, id_i]`` for MADDPG's centralised
  critic. Both see unit actions, so sampled and recorded actions share one scale whatever the
  environment's bounds.
- **Targets**: Polyak copies (``tau``) of the actor and both critics.

The bootstrap is per agent, ``y_t = r_t + gamma (1 - terminal_t) min_k Q'_k(o_{t+1},
mu'(o_{t+1}))`` (a terminal stops it, a truncation does not; ``target_mask == 0`` steps give no
TD error). Each update takes one critic step (both critics, their losses summed) and then one
actor step against the updated critics (the actor's gradient is the objective's gradient with
respect to its actions, pulled back through one actor pass); each algorithm supplies the critic regulariser (CQL, or
none) and the actor objective. The random numbers they need come from a key carried in the
train state.

Axis order inside the learner: ``[time, batch, agent, ...]``; sampled actions put their sample
axis first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from marlvault.config import MAX_WIDTH, require, require_range
from marlvault.errors import DatasetError
from marlvault.networks import Critic, GRUActionNetwork, ScannedRNN
from marlvault.offline.common import (
    Algorithm,
    check_learner_sizes,
    gradient_step,
    gru_sequence,
    init_gru_network,
    masked_mean,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch
from marlvault.offline.value import polyak
from marlvault.optim import make_optimiser

Array = jax.Array
QFn = Callable[[Array], Array]  # unit actions [L, K, N, A] -> Q [2, L, K, N] (both critics)


@dataclass(frozen=True)
class ActorCriticConfig:
    """Hyper-parameters every offline continuous actor–critic shares (each algorithm's
    ``Config`` adds its own)."""

    hidden: tuple[int, ...] = (64,)
    """Actor: MLP torso before the GRU."""
    rnn_size: int = 64
    """Actor: GRU width."""
    critic_hidden: tuple[int, ...] = (128, 128)
    """Critics: MLP layer sizes."""
    seq_len: int = 20
    """Window length L."""
    batch_size: int = 32
    """Windows per update."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip (each optimiser)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target actor and critics."""
    explore_noise: float = 0.1
    """Std of the Gaussian noise (in unit actions, clipped to the box) added when evaluation
    samples (``arch.eval_greedy=false``); greedy evaluation takes the actor's action."""
    num_updates: int = 20_000
    """Gradient updates in the whole run (each one critic and one actor step)."""

    def __post_init__(self) -> None:
        check_learner_sizes(self, self.batch_size * (self.seq_len + 1))
        ok = bool(self.critic_hidden) and all(1 <= n <= MAX_WIDTH for n in self.critic_hidden)
        require("system.critic_hidden", self.critic_hidden, ok,
                f"one or more layer sizes in [1, {MAX_WIDTH}]", "system.critic_hidden=128,128")
        require_range("system", self, "actor_lr", "critic_lr", "max_grad_norm", lo=0.0,
                      lo_open=True)
        require_range("system", self, "gamma", lo=0.0, hi=1.0)
        require_range("system", self, "tau", lo=0.0, hi=1.0, lo_open=True)
        require_range("system", self, "explore_noise", lo=0.0, hi=10.0)


class TrainState(NamedTuple):
    actor: Any  # actor parameters
    critic: Any  # both critics' parameters, stacked on a leading axis of 2
    target_actor: Any  # Polyak copies
    target_critic: Any
    actor_opt: Any  # optax states
    critic_opt: Any
    key: Array  # PRNG key of the next update's samples
    step: Array  # [] int32 updates done


class Nets(NamedTuple):
    actor: GRUActionNetwork  # raw outputs, tanh applied by actor_sequence
    critic: Critic


Features = Callable[[Array, Array, Array, Array], Array]
"""``(obs [..., N, O'], state [..., S], own [..., N, A], others [..., N, A]) -> [..., N, F]``:
each agent's critic input, with its own (unit) action ``own`` and, for a centralised critic, the
other agents' actions ``others``."""


# --- actions and networks ------------------------------------------------------------------------
def to_unit(actions: Array, low: float, high: float) -> Array:
    """Environment actions in ``[low, high]`` -> unit actions in ``[-1, 1]``."""
    return (actions - low) * (2.0 / (high - low)) - 1.0


def from_unit(unit: Array, low: float, high: float) -> Array:
    """Unit actions in ``[-1, 1]`` -> environment actions in ``[low, high]``."""
    return low + (unit + 1.0) * ((high - low) / 2.0)


def independent_features(obs: Array, state: Array, own: Array, others: Array) -> Array:
    """IDDPG's critic input ``[o_i, a_i]`` (the observation carries the agent id)."""
    del state, others
    return jnp.concatenate([obs, own], axis=-1)


def centralised_features(obs: Array, state: Array, own: Array, others: Array) -> Array:
    """MADDPG's critic input ``[s, a_1 .. a_N, id_i]`` where agent ``i``'s slot of the joint
    action holds ``own[i]`` and every other slot ``j`` holds ``others[j]``."""
    n, a = own.shape[-2:]
    eye = jnp.eye(n, dtype=bool)  # [i, j]: j is agent i itself
    joint = jnp.where(eye[..., None], own[..., None, :, :], others[..., None, :, :])
    joint = joint.reshape(*own.shape[:-2], n, n * a)  # [..., i, N*A]
    lead = own.shape[:-2]
    s = jnp.broadcast_to(state[..., None, :], (*lead, n, state.shape[-1]))
    ids = jnp.broadcast_to(jnp.eye(n, dtype=own.dtype), (*lead, n, n))
    del obs
    return jnp.concatenate([s, joint, ids], axis=-1)


def make_nets(config: ActorCriticConfig, spec: DataSpec) -> Nets:
    """The actor (raw outputs before ``tanh``) and the critic module of a config."""
    return Nets(GRUActionNetwork(spec.action_dim, config.hidden, config.rnn_size),
                Critic(config.critic_hidden))


def actor_sequence(nets: Nets, params: Any, obs: Array, rnn_size: int) -> Array:
    """Unit actions along windows: obs [L+1, K, N, O'] -> [L+1, K, N, A] in ``(-1, 1)``."""
    return jnp.tanh(gru_sequence(nets.actor, params, obs, rnn_size))


def twin_q(nets: Nets, params: Any, x: Array) -> Array:
    """Both critics' values of features ``x`` [..., F]: params stacked [2, ...] -> [2, ...]."""
    return jax.vmap(lambda p: nets.critic.apply(p, x))(params)


def over_samples(q_fn: QFn, actions: Array) -> Array:
    """``q_fn`` of each sample: actions [M, L, K, N, A] -> [M, 2, L, K, N]."""
    return jax.vmap(q_fn)(actions)


# --- losses --------------------------------------------------------------------------------------
def td_targets(q_next: Array, batch: SequenceBatch, gamma: float) -> Array:
    """[L, K, N] ``r + gamma (1 - terminal) min_k q_next[k]`` (q_next [2, L, K, N]), no
    gradient."""
    v = jnp.min(q_next, axis=0)
    return jax.lax.stop_gradient(batch.rewards + gamma * (1.0 - batch.terminal)[..., None] * v)


def td_loss(q_data: Array, y: Array, target_mask: Array) -> Array:
    """Sum over the critics of the mean squared TD error on steps with ``target_mask``.

    Args:
        q_data: [2, L, K, N] both critics' Q of the recorded actions.
        y: [L, K, N] targets.
        target_mask: [L, K] 1 where the step's next observation is known.
    """
    return jnp.sum(jax.vmap(lambda q: masked_mean(jnp.square(q - y),
                                                  target_mask[..., None]))(q_data))


def cql_samples(key: Array, pi: Array, num: int, sigma: float) -> tuple[Array, Array]:
    """Actions for the continuous CQL log-sum-exp and their sampling log-densities.

    ``num`` uniform actions in the unit box (density ``2^-A``) and ``num`` actions around the
    current policy's, ``clip(pi + sigma * eps, -1, 1)`` with ``eps ~ N(0, I)`` (log-density of
    the Gaussian noise; the clip is ignored, as in OG-MARL).

    Args:
        key: PRNG key.
        pi: [..., A] the actor's unit actions (no gradient needed).
        num: M samples of each kind.
        sigma: std of the noise around ``pi``.

    Returns:
        actions [2M, ..., A] and log-densities [2M, ...].
    """
    k_uniform, k_noise = jax.random.split(key)
    a = pi.shape[-1]
    uniform = jax.random.uniform(k_uniform, (num, *pi.shape), minval=-1.0, maxval=1.0)
    log_uniform = jnp.full((num, *pi.shape[:-1]), -a * math.log(2.0))
    eps = jax.random.normal(k_noise, (num, *pi.shape))
    near = jnp.clip(pi + sigma * eps, -1.0, 1.0)
    log_near = jnp.sum(-0.5 * jnp.square(eps) - math.log(sigma) - 0.5 * math.log(2.0 * math.pi),
                       axis=-1)
    return (jnp.concatenate([uniform, near]), jnp.concatenate([log_uniform, log_near]))


def continuous_cql_penalty(q_samples: Array, log_density: Array, q_data: Array) -> Array:
    """CQL(H)'s conservative gap with the log-sum-exp over actions estimated by importance
    sampling (Kumar et al. 2020, appendix F)::

        log (1/M sum_m exp(Q(o, a_m)) / p(a_m)) - Q(o, a_data)

    Args:
        q_samples: [M, ...] Q of the sampled actions.
        log_density: [M, ...] log-density each was sampled with.
        q_data: [...] Q of the recorded action.

    Returns:
        [...] the gap (pushed down by the critic loss).
    """
    m = q_samples.shape[0]
    lse = jax.nn.logsumexp(q_samples - log_density, axis=0) - math.log(m)
    return lse - q_data


def cql_regulariser(q_fn: QFn, q_data: Array, pi: Array, mask: Array, key: Array, num: int,
                    sigma: float, weight: float) -> tuple[Array, dict]:
    """``weight`` times the continuous CQL gap of both critics (summed), averaged over the
    steps in the episode.

    Args:
        q_fn: the online critics at the window's steps (see :data:`QFn`).
        q_data: [2, L, K, N] their Q of the recorded actions.
        pi: [L, K, N, A] the current actor's unit actions (no gradient).
        mask: [L, K] steps in the episode.
    """
    actions, log_p = cql_samples(key, pi, num, sigma)  # [2M, L, K, N, A], [2M, L, K, N]
    q_s = over_samples(q_fn, actions)  # [2M, 2, L, K, N]
    gap = continuous_cql_penalty(q_s, log_p[:, None], q_data)  # [2, L, K, N]
    cql = jnp.sum(jax.vmap(lambda g: masked_mean(g, mask[..., None]))(gap))
    return weight * cql, {"cql_loss": cql}


def actor_q_loss(q1: Array, mask: Array) -> Array:
    """DDPG's actor loss ``-mean Q_1(o, mu(o))`` over the steps in the episode (q1 [L, K, N])."""
    return -masked_mean(q1, mask[..., None])


# --- the update ----------------------------------------------------------------------------------
Regulariser = Callable[[QFn, Array, Array, Array, Array], tuple[Array, dict]]
"""``(q_fn, q_data [2, L, K, N], pi [L, K, N, A], mask [L, K], key) -> (penalty, metrics)``."""
ActorObjective = Callable[[Array, QFn, Array, Array, Array], tuple[Array, dict]]
"""``(pi [L, K, N, A] (with gradient), q_fn (updated critics, at the window's steps),
data [L, K, N, A] unit recorded actions, mask [L, K], key) -> (loss, metrics)``."""


class Parts(NamedTuple):
    """What one algorithm adds to the shared actor–critic update."""

    features: Features
    regulariser: Regulariser | None  # critic regulariser (None: plain TD)
    actor_objective: ActorObjective
    target_noise: float = 0.0  # TD3 target policy smoothing: noise std (unit actions)
    noise_clip: float = 0.5  # and its clip
    policy_delay: int = 1  # actor and target updates every this many critic updates


def make_update_step(config: ActorCriticConfig, spec: DataSpec, parts: Parts):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    nets = make_nets(config, spec)
    critic_tx = make_optimiser(config.critic_lr, config.max_grad_norm)
    actor_tx = make_optimiser(config.actor_lr, config.max_grad_norm)
    low, high = spec.action_low, spec.action_high

    def q_at_steps(critic: Any, batch: SequenceBatch, data: Array) -> QFn:
        return lambda own: twin_q(nets, critic, parts.features(batch.obs[:-1], batch.state[:-1],
                                                               own, data))

    def target(state: TrainState, batch: SequenceBatch, key: Array) -> Array:
        nxt = actor_sequence(nets, state.target_actor, batch.obs, config.rnn_size)[1:]
        noise = jnp.clip(parts.target_noise * jax.random.normal(key, nxt.shape),
                         -parts.noise_clip, parts.noise_clip)
        nxt = jnp.clip(nxt + noise, -1.0, 1.0)
        q_next = twin_q(nets, state.target_critic,
                        parts.features(batch.obs[1:], batch.state[1:], nxt, nxt))
        return td_targets(q_next, batch, config.gamma)

    def update(state: TrainState, batch: SequenceBatch) -> tuple[TrainState, dict]:
        key, k_target, k_reg, k_actor = jax.random.split(state.key, 4)
        data = to_unit(batch.actions, low, high)
        y = target(state, batch, k_target)
        # one actor pass serves the critic regulariser (no gradient) and the actor step (vjp)
        pi, actor_vjp = jax.vjp(
            lambda p: actor_sequence(nets, p, batch.obs, config.rnn_size)[:-1], state.actor)
        pi = jax.lax.stop_gradient(pi)

        def critic_loss(critic: Any) -> tuple[Array, dict]:
            q_fn = q_at_steps(critic, batch, data)
            q_data = q_fn(data)
            td = td_loss(q_data, y, batch.target_mask)
            reg, metrics = (jnp.zeros(()), {}) if parts.regulariser is None else \
                parts.regulariser(q_fn, q_data, pi, batch.mask, k_reg)
            return td + reg, {"critic_loss": td + reg, "td_loss": td,
                              "mean_q": masked_mean(q_data[0], batch.mask[..., None]), **metrics}

        critic, critic_opt, c_metrics = gradient_step(critic_tx, critic_loss, state.critic,
                                                      state.critic_opt)
        q_fn = q_at_steps(critic, batch, data)
        grad_pi, a_metrics = jax.grad(parts.actor_objective, has_aux=True)(
            pi, q_fn, data, batch.mask, k_actor)
        (grads,) = actor_vjp(grad_pi)  # chain rule through the actor
        updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor)
        actor = optax.apply_updates(state.actor, updates)
        due = (state.step + 1) % parts.policy_delay == 0
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(due, n, o), new, old)  # noqa: E731
        actor, actor_opt = keep(actor, state.actor), keep(actor_opt, state.actor_opt)
        new = TrainState(
            actor=actor, critic=critic,
            target_actor=keep(polyak(state.target_actor, actor, config.tau), state.target_actor),
            target_critic=keep(polyak(state.target_critic, critic, config.tau),
                               state.target_critic),
            actor_opt=actor_opt, critic_opt=critic_opt, key=key, step=state.step + 1,
        )  # fmt: skip
        return new, {**c_metrics, **a_metrics}

    return update


def make_init(config: ActorCriticConfig, spec: DataSpec, features: Features):
    """``init(key) -> TrainState`` (targets start as copies of the online networks)."""
    nets = make_nets(config, spec)
    critic_tx = make_optimiser(config.critic_lr, config.max_grad_norm)
    actor_tx = make_optimiser(config.actor_lr, config.max_grad_norm)
    n, a = spec.num_agents, spec.action_dim

    def init(key: Array) -> TrainState:
        k_actor, k_critic, k_state = jax.random.split(key, 3)
        actor = init_gru_network(nets.actor, k_actor, spec, config.rnn_size)
        x = features(jnp.zeros((1, n, spec.input_dim)), jnp.zeros((1, spec.state_dim)),
                     jnp.zeros((1, n, a)), jnp.zeros((1, n, a)))
        # one init per critic, stacked, not vmapped: a vmapped orthogonal init is a batched QR,
        # whose CPU kernel blocks an XLA pool thread while the pool runs its batch, and two of
        # them at once deadlock a 2-thread pool (docs/BENCHMARKS.md, offline throughput)
        critic = jax.tree.map(lambda *p: jnp.stack(p), *(
            nets.critic.init(k, x) for k in jax.random.split(k_critic)))
        return TrainState(actor, critic, actor, critic, actor_tx.init(actor),
                          critic_tx.init(critic), k_state, jnp.zeros((), jnp.int32))

    return init


def make_act(config: ActorCriticConfig, spec: DataSpec):
    """``act(params, hidden, obs [E, N, O'], legal, reset [E], key=None) -> (hidden, actions)``.

    ``params`` are the actor's; actions are [E, N, A] environment actions: the actor's (greedy),
    or with ``key`` the actor's plus Gaussian noise of std ``explore_noise`` in unit actions,
    clipped to the box. ``legal`` is ignored (continuous actions have no masks)."""
    nets = make_nets(config, spec)

    def act(params: Any, hidden: Array, obs: Array, legal: Array, reset: Array, key=None):
        del legal
        resets = jnp.broadcast_to(reset[:, None], obs.shape[:2])[None]
        hidden, out = nets.actor.apply(params, hidden, (obs[None], resets))
        unit = jnp.tanh(out[0])
        if key is not None:
            noise = config.explore_noise * jax.random.normal(key, unit.shape)
            unit = jnp.clip(unit + noise, -1.0, 1.0)
        return hidden, from_unit(unit, spec.action_low, spec.action_high)

    return act


def require_continuous(spec: DataSpec, name: str) -> None:
    """Raise :class:`DatasetError` with the fix when ``spec``'s actions are discrete."""
    if not spec.continuous:
        raise DatasetError(
            f"{name} learns from continuous actions (B, T, N, A) float32, found discrete actions "
            f"(B, T, N) ({spec.action_dim} choices); fix: train a discrete-action algorithm on "
            "this vault (bc, iql-cql, qmix-cql, iql-bcq, qmix-bcq)"
        )


def actor_critic_algorithm(name: str, config: ActorCriticConfig, spec: DataSpec,
                           parts: Parts) -> Algorithm:
    """The bundle of a continuous actor–critic: windows of ``config.seq_len``, acting with the
    actor (``params(state)`` is its parameters)."""
    require_continuous(spec, name)
    return Algorithm(
        name=name,
        seq_len=config.seq_len,
        stride=0,
        batch_size=config.batch_size,
        init=make_init(config, spec, parts.features),
        update=make_update_step(config, spec, parts),
        params=lambda state: state.actor,
        init_hidden=lambda e: ScannedRNN.initialize_carry((e, spec.num_agents), config.rnn_size),
        act=make_act(config, spec),
    )
