"""Recurrent IPPO / MAPPO: GRU actor and critic, truncated BPTT over each rollout, Anakin style.

Built on :mod:`marlvault.online.ippo`'s pieces (env step, GAE batch, clipped loss, optimiser, the
update scan, the sharded learner, :class:`~marlvault.online.ippo.Trajectory`); only what a hidden
state changes lives here. Axis order ``[time, env, agent, ...]`` (``T``, ``B`` envs on this
device, ``N`` agents, ``H`` = ``network.rnn_size``).

Networks (both shared by all agents, like IPPO's): MLP torso (``network.actor_hidden`` /
``critic_hidden``) -> GRU (``rnn_size``) -> MLP (``network.post_hidden``) -> head. The actor's head
comes from :class:`~marlvault.networks.ActionSpace` (categorical logits over legal actions, or a
tanh-Gaussian for continuous actions); the critic's is a scalar value. MAPPO
(``system.centralised_critic=true``) feeds the critic the global state, as IPPO's does.

Hidden state
    The learner state carries the actor's and the critic's GRU state, ``[B, N, H]`` each, across
    steps *and* across rollouts. Before the networks read an observation whose
    ``step_count == 0`` (the first of an episode: after the initial reset and after every
    auto-reset) its env's hidden state is set to zero, so nothing crosses an episode boundary.

Critic pass
    The rollout's per-step loop runs only the actor and the envs. The critic then reads the
    whole rollout in one sequence pass from the state it started from, with the same resets,
    plus the observation after the last step (the GAE bootstrap); its state after each step
    gives the truncation bootstraps (below) and the state carried to the next rollout. The
    results equal a critic stepped along with the actor (tests/online/test_rec_ippo.py).

Truncated BPTT
    The update keeps the hidden states the rollout *started* from and replays both networks over
    the whole ``T``-step sequence from them, with the same resets (``step_count == 0``). Before
    any parameter change the replay reproduces the rollout's values and log-probabilities (up to
    float rounding), so the first minibatch's PPO ratio is 1. Gradients flow through the whole
    rollout (truncated at its start).

Truncation bootstrap
    At a truncation the bootstrap value is the critic's value of the true next observation
    (``final_obs``), read from the critic's hidden state after the last step of the cut episode,
    without a reset (the observation continues that episode).

Minibatches (whole sequences, device-count invariant)
    Minibatches split the *envs*, never time. Env ``g`` (global index: device ``d`` holds
    ``g = d * L + l`` for its ``L`` local envs) goes to minibatch ``perm[g % M]``, where ``perm``
    is a random permutation of the ``M`` minibatches drawn each epoch from the replicated learner
    key. ``L`` must be a multiple of ``M`` (checked by :func:`make_train`); then ``g % M == l % M``,
    every device holds exactly ``L / M`` envs of every minibatch, and the union over devices of
    minibatch ``m`` is the same set of envs whatever the device count. With gradients and
    advantage statistics averaged by ``pmean`` over equal-sized shares, a run on 4 devices equals
    the 1-device run up to float reduction order.

    A full reshuffle of envs between minibatches each epoch (what Mava's single-device-view
    recurrent PPO does) would move sequences between devices (an all-to-all of the rollout) to
    stay invariant; here the minibatch *membership* is fixed by residue class (envs are i.i.d.,
    so no minibatch is special) and the *order* of the minibatches is reshuffled every epoch.

Defaults (``configs/rec_ippo.yaml``) follow Mava's ``rec_ippo``/``rec_mappo``: rollout 128,
4 epochs, 2 minibatches, lr 2.5e-4, clip 0.2, entropy 0.01, GRU 128 between one 128-unit layer
before and one after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from marlvault.config import MAX_WIDTH, largest_divisor, require, require_range
from marlvault.envs.base import Array, EnvSpec, TimeStep
from marlvault.envs.vec import VecEnv, VecState
from marlvault.networks import ActionSpace, Critic, RecurrentNetwork, ScannedRNN
from marlvault.online import anakin, ippo
from marlvault.online.anakin import REPLICATED, SHARDED
from marlvault.online.config import NetworkConfig
from marlvault.online.ippo import OptStates, Params, Transition
from marlvault.online.losses import (
    Batch,
    LossInfo,
    actor_input,
    clipped_ppo_loss,
    make_batch,
    network_inputs,
)


# --- config --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SystemConfig(ippo.SystemConfig):
    """PPO hyperparameters of the recurrent systems (defaults: Mava's rec_ippo)."""

    num_minibatches: int = 2
    """Minibatches per epoch (split along the env axis, so sequences stay whole; must divide the
    envs on each device)."""

    def _check_minibatch_split(self) -> None:
        """Minibatches split the envs: checked where the env count is known (:class:`Config`
        for ``arch.num_envs``, :func:`make_train` for the envs on each device)."""


@dataclass(frozen=True)
class RecNetworkConfig(NetworkConfig):
    """Sizes of the recurrent actor and critic: MLP -> GRU -> MLP -> head."""

    actor_hidden: tuple[int, ...] = (128,)
    """Dense layers of the actor before its GRU."""
    critic_hidden: tuple[int, ...] = (128,)
    """Dense layers of the critic before its GRU."""
    rnn_size: int = 128
    """GRU hidden-state size of the actor and of the critic."""
    post_hidden: tuple[int, ...] = (128,)
    """Dense layers after the GRU, before the policy and value heads (empty: none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("network", self, "rnn_size", lo=1, hi=MAX_WIDTH)
        ok = all(1 <= n <= MAX_WIDTH for n in self.post_hidden)
        require("network.post_hidden", self.post_hidden, ok,
                f"zero or more layer sizes in [1, {MAX_WIDTH}]", "network.post_hidden=128")


@dataclass(frozen=True)
class Config(ippo.Config):
    """A full recurrent IPPO/MAPPO run."""

    system: SystemConfig = field(default_factory=SystemConfig)
    network: RecNetworkConfig = field(default_factory=RecNetworkConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        n, m = self.arch.num_envs, self.system.num_minibatches
        require("system.num_minibatches", m, n % m == 0,
                f"a divisor of arch.num_envs={n} (minibatches split the envs, whole sequences)",
                f"system.num_minibatches={largest_divisor(n, m)}")


def check_minibatches(config: Config, local: int, devices: int) -> None:
    """Every device's ``local`` envs split into ``num_minibatches`` equal shares.

    Raises:
        ConfigError: naming both fixes (fewer minibatches, or more envs).
    """
    m, n = config.system.num_minibatches, config.arch.num_envs
    step = devices * m
    more_envs = -(-n // step) * step
    require("system.num_minibatches", m, local % m == 0,
            f"a divisor of the {local} envs on each of the {devices} devices (arch.num_envs={n}; "
            f"each device's envs split into the minibatches)",
            f"system.num_minibatches={largest_divisor(local, m)} or arch.num_envs={more_envs}")


# --- state and data ------------------------------------------------------------------------------
class Hidden(NamedTuple):
    """GRU states, ``[B, N, H]`` each."""

    actor: Array
    critic: Array


class LearnerState(NamedTuple):
    """IPPO's learner state plus the GRU states (sharded like the envs)."""

    params: Params
    opt_states: OptStates
    vstate: VecState  # [B] env carry
    timestep: TimeStep  # [B, ...] what the next action sees
    hidden: Hidden  # [B, N, H] GRU states before ``timestep`` is read (not yet reset)
    env_keys: Array  # [B, 2] uint32 per-env action-sampling keys
    learner_key: Array  # [2] uint32 minibatch-shuffle key (replicated)
    update: Array  # [] int32 updates done so far


LEARNER_SPECS = LearnerState(
    params=REPLICATED,
    opt_states=REPLICATED,
    vstate=SHARDED,
    timestep=SHARDED,
    hidden=SHARDED,
    env_keys=SHARDED,
    learner_key=REPLICATED,
    update=REPLICATED,
)


class RecBatch(NamedTuple):
    """Training sequences: IPPO's batch ``[T, B, ...]`` plus what the replay needs."""

    seq: Batch  # [T, B, ...]
    reset: Array  # [T, B, N] bool, the observation is the first of an episode
    hidden: Hidden  # [B, N, H] GRU states the rollout started from


class Networks(NamedTuple):
    actor: nn.Module  # RecurrentNetwork with the ActionSpace's head
    critic: nn.Module  # RecurrentNetwork with a Critic head
    space: ActionSpace
    rnn_size: int


# --- networks ------------------------------------------------------------------------------------
def make_networks(spec: EnvSpec, config: Config) -> Networks:
    """The GRU actor (head from ``spec``'s action space) and GRU critic."""
    space = ActionSpace.of(spec)
    net = config.network
    return Networks(
        actor=RecurrentNetwork(space.actor(net.post_hidden), net.actor_hidden, net.rnn_size),
        critic=RecurrentNetwork(Critic(net.post_hidden), net.critic_hidden, net.rnn_size),
        space=space,
        rnn_size=net.rnn_size,
    )


def initial_hidden(nets: Networks, batch_shape: tuple[int, ...]) -> Array:
    """Zeros ``[*batch_shape, H]``: the GRU state before an episode's first observation."""
    return ScannedRNN.initialize_carry(batch_shape, nets.rnn_size)


def agent_resets(step_count: Array, num_agents: int) -> Array:
    """``step_count [...] -> [..., N]`` bool: the observation is the first of an episode."""
    first = step_count == 0
    return jnp.broadcast_to(first[..., None], (*first.shape, num_agents))


def _one_step(net: nn.Module, params: Any, h: Array, x: Array, reset: Array) -> tuple[Array, Any]:
    """One GRU step of ``net`` on ``x [B, N, F]``, ``reset [B, N]``: ``(h, out [B, N, ...])``."""
    h, out = net.apply(params, h, (x[None], reset[None]))
    return h, jax.tree.map(lambda y: y[0], out)


def make_policy(nets: Networks, system: ippo.SystemConfig):
    """``policy(actor_params, hidden [B, N, H], obs [B, N, O] raw, first [B] bool) ->
    (hidden, out [B, N, A])``: one step of the actor (``out`` is logits, or ``(mean, log_std)``
    for continuous actions); ``first`` marks episode starts, where ``hidden`` is reset."""

    def policy(actor_params: Any, hidden: Array, obs: Array, first: Array):
        reset = jnp.broadcast_to(first[..., None], obs.shape[:-1])
        return _one_step(nets.actor, actor_params, hidden, actor_input(obs, system), reset)

    return policy


# --- learner -------------------------------------------------------------------------------------
def make_rollout(
    vec: VecEnv, nets: Networks, config: Config
) -> Callable[[Params, LearnerState], tuple[LearnerState, Transition, Any]]:
    """``rollout(params, state) -> (state, transitions [T, B], (last_value [B, N], metrics))``,
    carrying and resetting the GRU states; the critic runs after the per-step loop, over the
    whole rollout (:func:`critic_values`; see the module docstring)."""
    system = config.system
    n = vec.spec.num_agents

    def step(params: Params, carry: LearnerState, _: Any):
        ts = carry.timestep
        reset = agent_resets(ts.step_count, n)
        h_actor, out = _one_step(nets.actor, params.actor, carry.hidden.actor,
                                 actor_input(ts.obs, system), reset)  # fmt: skip
        dist = nets.space.distribution(out, ts.legal)
        no_value = jnp.zeros(reset.shape, jnp.float32)  # filled in by critic_values
        carry, tr, vstep = ippo.sample_and_step(vec, carry, dist, no_value)
        carry = carry._replace(hidden=carry.hidden._replace(actor=h_actor))
        return carry, (tr, vstep.final_state, vstep.metrics)

    def rollout(params: Params, state: LearnerState):
        start = state.hidden.critic
        state, (traj, final_state, metrics) = jax.lax.scan(
            lambda c, x: step(params, c, x), state, None, length=system.rollout_length
        )
        traj, last, h_critic = critic_values(nets, params.critic, start, traj, final_state,
                                             state.timestep, system)  # fmt: skip
        state = state._replace(hidden=state.hidden._replace(critic=h_critic))
        return state, traj, (last, metrics)

    return rollout


def critic_values(
    nets: Networks, critic_params: Any, h: Array, traj: Transition, final_state: Array,
    next_ts: TimeStep, system: ippo.SystemConfig,
) -> tuple[Transition, Array, Array]:
    """The critic over a whole rollout in one sequence pass.

    Args:
        nets: the networks.
        critic_params: the critic's parameters.
        h: [B, N, H] critic state the rollout started from.
        traj: the rollout [T, B] (``value`` and ``final_value`` are replaced).
        final_state: [T, B, S] global state of each step's true next observation (with
            ``traj.final_obs``, the critic's input there).
        next_ts: the timestep after the last step [B].
        system: the system config (network inputs).

    Returns:
        ``(traj, last_value [B, N], h [B, N, H])``: ``traj`` with ``value`` (the critic on each
        step's observation) and ``final_value`` (where the step truncated: the critic on its
        true next observation from the state after the step, no reset; else 0), the value of
        ``next_ts`` (the bootstrap after the last step) and the critic state before
        ``next_ts`` is read (carried to the next rollout).
    """
    steps, n = traj.reward.shape[0], traj.reward.shape[-1]
    critic_in = network_inputs(traj.obs, traj.state, system)[1]
    next_in = network_inputs(next_ts.obs, next_ts.state, system)[1]
    x = jnp.concatenate([critic_in, next_in[None]])  # [T + 1, B, N, F]
    reset = agent_resets(jnp.concatenate([traj.step_count, next_ts.step_count[None]]), n)
    _, y, value = nets.critic.apply(critic_params, h, (x, reset), method="sequence")

    def final_values(_: Array) -> Array:
        # one step from each step's state y[t] into its true next observation, all t at once
        h_t = y[:steps].reshape(-1, *y.shape[2:])  # [T * B, N, H]
        final_in = network_inputs(traj.final_obs, final_state, system)[1]  # [T, B, N, F]
        x_t = final_in.reshape(1, -1, *final_in.shape[2:])  # [1, T * B, N, F]
        _, v = nets.critic.apply(critic_params, h_t, (x_t, jnp.zeros(x_t.shape[:-1], bool)))
        return jnp.where(traj.truncated[..., None], v.reshape(traj.reward.shape), 0.0)

    final = jax.lax.cond(jnp.any(traj.truncated), final_values, jnp.zeros_like, traj.reward)
    traj = traj._replace(value=value[:steps], final_value=final)
    return traj, value[steps], y[steps - 1]


def env_partition(key: Array, global_index: Array, num_minibatches: int) -> Array:
    """This device's envs of each minibatch: ``[M, L / M]`` local positions.

    Args:
        key: the epoch's key (the same on every device).
        global_index: [L] int32 global indices of this device's envs (``d * L + arange(L)``).
        num_minibatches: M; ``L`` must be a multiple of it.

    Env ``g`` belongs to minibatch ``perm[g % M]`` with ``perm`` a random permutation of ``M``
    drawn from ``key``, so the union over devices of minibatch ``m`` does not depend on how the
    envs are split over devices (see the module docstring).
    """
    perm = jax.random.permutation(key, num_minibatches)
    group = perm[global_index % num_minibatches]
    return jnp.argsort(group, stable=True).reshape(num_minibatches, -1).astype(jnp.int32)


def make_rec_batch(traj: Transition, last_value: Array, hidden: Hidden,
                   system: ippo.SystemConfig) -> RecBatch:
    """GAE and network inputs of a rollout (:func:`make_batch`), its episode starts and the
    GRU states ``hidden`` it started from."""
    resets = agent_resets(traj.step_count, traj.reward.shape[-1])
    return RecBatch(make_batch(traj, last_value, system), resets, hidden)


def group_envs(batch: RecBatch, num_minibatches: int) -> RecBatch:
    """This device's envs split once per update by residue class: ``[M, T, L/M, ...]``
    (hidden ``[M, L/M, ...]``), group ``r`` holding local envs ``r, r + M, r + 2M, ...``.

    Every epoch's minibatches are these groups in a new order (:func:`env_minibatches`), so the
    rollout is gathered once per update, not once per epoch."""
    idx = jnp.arange(batch.reset.shape[1]).reshape(-1, num_minibatches).T  # [M, L/M]
    seq, reset = jax.tree.map(lambda x: jnp.swapaxes(x[:, idx], 0, 1), (batch.seq, batch.reset))
    return RecBatch(seq, reset, jax.tree.map(lambda x: x[idx], batch.hidden))


def env_minibatches(key: Array, grouped: RecBatch, num_minibatches: int) -> RecBatch:
    """One epoch's minibatches of whole sequences from :func:`group_envs`'s groups:
    ``[M, T, L/M, ...]``, minibatch ``m`` holding this device's envs ``env_partition(...)[m]``.

    Env ``l`` is in group ``l % M``, which is minibatch ``perm[l % M]`` (``l % M == g % M`` as
    ``M`` divides ``L``), so minibatch ``m`` is group ``argsort(perm)[m]``, envs in the same
    (ascending) order."""
    perm = jax.random.permutation(key, num_minibatches)
    return jax.tree.map(lambda x: x[jnp.argsort(perm)], grouped)


def recurrent_loss(
    params: Params, mb: RecBatch, nets: Networks, system: ippo.SystemConfig, adv_stats: Array
) -> tuple[Array, LossInfo]:
    """PPO's clipped loss after replaying actor and critic over the minibatch's sequences
    ``[T, B/M]`` from the hidden states the rollout started from (truncated BPTT)."""
    b = mb.seq
    _, out = nets.actor.apply(params.actor, mb.hidden.actor, (b.actor_in, mb.reset))
    dist = nets.space.distribution(out, b.legal)
    _, value = nets.critic.apply(params.critic, mb.hidden.critic, (b.critic_in, mb.reset))
    return clipped_ppo_loss(dist, value, b, system, adv_stats)


def make_update_step(
    vec: VecEnv, nets: Networks, config: Config, return_trajectories: bool = False
) -> Callable[[LearnerState, Any], tuple[LearnerState, tuple[ippo.UpdateMetrics, Any]]]:
    """One recurrent PPO update on this device's envs (inside :func:`anakin.shard_jit`)."""
    system = config.system
    m = system.num_minibatches

    def to_batch(traj: Transition, last_value: Array, start: LearnerState) -> RecBatch:
        return group_envs(make_rec_batch(traj, last_value, start.hidden, system), m)

    def minibatches(key: Array, grouped: RecBatch) -> RecBatch:
        return env_minibatches(key, grouped, m)

    return ippo.make_ppo_update(
        config, nets.space, make_rollout(vec, nets, config), to_batch, minibatches,
        lambda params, mb, stats: recurrent_loss(params, mb, nets, system, stats),
        lambda mb: mb.seq.advantage, return_trajectories,
    )  # fmt: skip


# --- assembly ------------------------------------------------------------------------------------
def make_train(
    config: Config,
    *,
    mesh: jax.sharding.Mesh | None = None,
    return_trajectories: bool = False,
    updates_per_call: int | None = None,
    autoreset: str = "fast",
) -> ippo.Learner:
    """Build the recurrent learner (same interface as :func:`marlvault.online.ippo.make_train`).

    Raises:
        ConfigError: as IPPO's, and if the envs on each device do not split into
            ``system.num_minibatches`` equal shares.
    """
    mesh = anakin.make_mesh() if mesh is None else mesh
    env, local = ippo.learner_envs(config, mesh)
    check_minibatches(config, local, anakin.num_shards(mesh))
    nets = make_networks(env.spec, config)
    vec = VecEnv(env, local, autoreset=autoreset)
    update_step = make_update_step(vec, nets, config, return_trajectories)
    learn = ippo.shard_learn(update_step, config, mesh, LEARNER_SPECS, return_trajectories,
                             updates_per_call)  # fmt: skip
    init = _make_init(VecEnv(env, config.arch.num_envs), nets, config, mesh)
    return ippo.Learner(config, env.spec, mesh, nets, init, learn)


def init_params(nets: Networks, spec: EnvSpec, system: ippo.SystemConfig, key: Array) -> Params:
    """Fresh actor and critic parameters for ``spec``'s inputs."""
    k_actor, k_critic = jax.random.split(key)
    n = spec.num_agents
    obs = jnp.zeros((1, 1, n, spec.obs_dim), jnp.float32)
    state = jnp.zeros((1, 1, spec.state_dim), jnp.float32)
    actor_in, critic_in = network_inputs(obs, state, system)
    h, reset = initial_hidden(nets, (1, n)), jnp.ones((1, 1, n), bool)
    return Params(nets.actor.init(k_actor, h, (actor_in, reset)),
                  nets.critic.init(k_critic, h, (critic_in, reset)))  # fmt: skip


def _make_init(vec: VecEnv, nets: Networks, config: Config, mesh) -> Callable:
    opt = ippo.optimiser(config)

    def init_global(key: Array) -> LearnerState:
        k_env, k_act, k_learn, k_params = jax.random.split(key, 4)
        vstate, ts = vec.reset(k_env)
        params = init_params(nets, vec.spec, config.system, k_params)
        opt_states = OptStates(opt.init(params.actor), opt.init(params.critic))
        zeros = initial_hidden(nets, (vec.num_envs, vec.spec.num_agents))
        env_keys = jax.random.split(k_act, vec.num_envs)
        return LearnerState(params, opt_states, vstate, ts, Hidden(zeros, zeros), env_keys, k_learn,
                            jnp.zeros((), jnp.int32))  # fmt: skip

    return anakin.jit_sharded(init_global, mesh, LEARNER_SPECS)  # key -> LearnerState
