"""IPPO / MAPPO in Anakin style: one jitted learner that scans rollouts and PPO updates.

This module holds the config, the learner state, the rollout and the update; PPO's pure
functions (GAE, clipped loss, network inputs) are in :mod:`marlvault.online.losses`. The
recurrent systems (:mod:`marlvault.online.rec_ippo`) reuse the policy-independent parts from here:
:func:`env_step` (sample, step, record a transition), :func:`make_ppo_update` (the update scan
with its optimiser and metrics, given a rollout, a batcher, a minibatch split and a loss),
:func:`learner_envs` and :func:`shard_learn` (the sharded learner), and :class:`Trajectory`.

Axis order inside the learner: ``[time, env, agent, ...]`` (``T`` = rollout_length, ``B`` = envs
on this device, ``N`` agents). One learner call runs ``updates_per_call`` updates in a
``lax.scan``; each update

1. rolls the policy out for ``T`` steps in ``B`` auto-resetting envs (``lax.scan``), computing
   the actor logits and the critic value once per step,
2. computes GAE: a termination stops the bootstrap; at a truncation the bootstrap value is the
   critic's value of the *true* next observation (``VecStep.final_obs``), and
3. runs ``ppo_epochs`` epochs of ``num_minibatches`` minibatches: clipped policy loss, clipped
   value loss, entropy bonus, per-network global-norm clipping and Adam.

Minibatches split the *time* axis (a fresh permutation of the ``T`` steps every epoch, shared by
all devices): every device takes the same steps of its own envs, so the union over devices is
exactly the single-device minibatch and gradients averaged with ``pmean`` equal the single-device
gradients. Action-sampling keys are per env (like the env's reset keys), so a run gives the same
parameters on 1 or 4 devices up to float reduction order.

``centralised_critic=True`` (MAPPO) feeds the critic the global state (with the agent's one-hot
id) instead of the agent's observation; at a truncation its bootstrap sees the true next state
(``VecStep.final_state``) with the true next observation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from marlvault.config import (
    INT32_MAX,
    MAX_BATCH_STEPS,
    MAX_PARALLEL,
    largest_divisor,
    require,
    require_range,
)
from marlvault.distributed import DistConfig
from marlvault.envs.base import Array, EnvSpec, TimeStep
from marlvault.envs.registry import make_env
from marlvault.envs.vec import VecEnv, VecState
from marlvault.networks import ActionSpace, Critic
from marlvault.online import anakin
from marlvault.online.anakin import REPLICATED, SHARDED
from marlvault.online.config import ArchConfig, EnvConfig, NetworkConfig, RecordConfig
from marlvault.online.losses import Batch, LossInfo, make_batch, network_inputs, ppo_loss
from marlvault.optim import linear_decay, make_optimiser
from marlvault.run import LoggerConfig

P = jax.sharding.PartitionSpec
PPO_ADAM_EPS = 1e-5
"""Adam epsilon of the PPO optimisers (as in PureJaxRL and Mava)."""


MAX_EPOCHS = 1024
"""Most PPO epochs over one rollout."""
MAX_TOTAL_TIMESTEPS = 10**13
"""Most environment steps a run may ask for (far beyond any run; keeps the sizes derived from it
representable)."""


# --- config --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SystemConfig:
    """PPO hyperparameters (defaults: what the field uses for RobotWarehouse)."""

    total_timesteps: int = 2_000_000
    """Environment steps in total (all envs, all devices)."""
    rollout_length: int = 128
    """T, steps per env per update."""
    ppo_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 2
    """Minibatches per epoch (split along the time axis; must divide T)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_eps: float = 0.2
    """PPO ratio clip and value clip."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Global-norm gradient clip (per network)."""
    lr: float = 2.5e-4
    """Adam learning rate of actor and critic."""
    decay_lr: bool = False
    """Decay the learning rate linearly to 0 over the run."""
    centralised_critic: bool = False
    """MAPPO: the critic sees the global state instead of the agent's observation."""
    add_agent_ids: bool = True
    """Append a one-hot agent id to the network inputs."""

    def __post_init__(self) -> None:
        require_range("system", self, "total_timesteps", lo=1, hi=MAX_TOTAL_TIMESTEPS)
        require_range("system", self, "rollout_length", lo=1, hi=MAX_PARALLEL)
        require_range("system", self, "ppo_epochs", lo=1, hi=MAX_EPOCHS)
        require_range("system", self, "num_minibatches", lo=1, hi=MAX_PARALLEL)
        self._check_minibatch_split()
        require_range("system", self, "gamma", "gae_lambda", lo=0.0, hi=1.0)
        require_range("system", self, "clip_eps", "max_grad_norm", "lr", lo=0.0, lo_open=True)
        require_range("system", self, "ent_coef", "vf_coef", lo=0.0)

    def _check_minibatch_split(self) -> None:
        """Minibatches split the time axis: ``num_minibatches`` divides ``rollout_length``."""
        t, mb = self.rollout_length, self.num_minibatches
        require("system.num_minibatches", mb, t % mb == 0,
                f"a divisor of system.rollout_length={t} (minibatches split time)",
                f"system.num_minibatches={largest_divisor(t, mb)}")


@dataclass(frozen=True)
class Config:
    """A full IPPO/MAPPO run."""

    env: EnvConfig = field(default_factory=EnvConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def __post_init__(self) -> None:
        _check_sizes(self)

    @property
    def steps_per_update(self) -> int:
        """Env steps per update over all envs: ``T * num_envs``."""
        return self.system.rollout_length * self.arch.num_envs

    @property
    def num_updates(self) -> int:
        """Updates asked for (at least one per evaluation). The run performs
        ``num_calls * updates_per_call`` updates, which rounds this down to a multiple of
        ``arch.num_evaluation``."""
        return max(self.total_updates_floor, self.arch.num_evaluation)

    @property
    def total_updates_floor(self) -> int:
        """``total_timesteps // steps_per_update``."""
        return self.system.total_timesteps // self.steps_per_update

    @property
    def updates_per_call(self) -> int:
        """Updates per jitted learner call (between two evaluations)."""
        return max(1, self.num_updates // self.arch.num_evaluation)

    @property
    def num_calls(self) -> int:
        """Learner calls (= evaluations) in the run."""
        return self.arch.num_evaluation


def _check_sizes(config: Config) -> None:
    """Products of sizes: the batch of one update fits memory, the optimiser's step count int32."""
    t = config.system.rollout_length
    require("arch.num_envs", config.arch.num_envs, config.steps_per_update <= MAX_BATCH_STEPS,
            f"num_envs x system.rollout_length={t} <= {MAX_BATCH_STEPS} env steps per update",
            f"arch.num_envs={max(1, MAX_BATCH_STEPS // t)}")
    per_update = config.system.ppo_epochs * config.system.num_minibatches  # <= 2**30
    fits = max(1, INT32_MAX // per_update)  # updates within Adam's int32 step count
    expected = f"at most {INT32_MAX} optimiser steps (updates x ppo_epochs x num_minibatches)"
    require("arch.num_evaluation", config.arch.num_evaluation,
            config.arch.num_evaluation <= fits, expected, f"arch.num_evaluation={fits}")
    require("system.total_timesteps", config.system.total_timesteps,
            config.num_updates <= fits, expected,
            f"system.total_timesteps={min(fits * config.steps_per_update, MAX_TOTAL_TIMESTEPS)}")


# --- state and data ------------------------------------------------------------------------------
class Params(NamedTuple):
    actor: Any  # flax params of the Actor
    critic: Any  # flax params of the Critic


class OptStates(NamedTuple):
    actor: Any  # optax state of the actor optimiser
    critic: Any  # optax state of the critic optimiser


class LearnerState(NamedTuple):
    """Carry of the learner. Specs: params/opt/learner_key/update replicated, the rest sharded."""

    params: Params
    opt_states: OptStates
    vstate: VecState  # [B] env carry
    timestep: TimeStep  # [B, ...] what the next action sees
    env_keys: Array  # [B, 2] uint32 per-env action-sampling keys
    learner_key: Array  # [2] uint32 minibatch-shuffle key
    update: Array  # [] int32 updates done so far


LEARNER_SPECS = LearnerState(
    params=REPLICATED,
    opt_states=REPLICATED,
    vstate=SHARDED,
    timestep=SHARDED,
    env_keys=SHARDED,
    learner_key=REPLICATED,
    update=REPLICATED,
)


class Transition(NamedTuple):
    """One rollout, ``[T, B, ...]``."""

    obs: Array  # [T, B, N, O] float32 raw observation acted on
    legal: Array  # [T, B, N, A] bool
    state: Array  # [T, B, S] float32
    action: Array  # [T, B, N] int32 (continuous: [T, B, N, A] float32 raw, before the squash)
    reward: Array  # [T, B, N] float32
    terminated: Array  # [T, B] bool
    truncated: Array  # [T, B] bool
    log_prob: Array  # [T, B, N] float32 behaviour log-probability
    value: Array  # [T, B, N] float32 critic value of obs
    final_value: Array  # [T, B, N] float32 value of the true next obs where truncated, else 0
    step_count: Array  # [T, B] int32
    final_obs: Array  # [T, B, N, O] float32 true next observation


class Trajectory(NamedTuple):
    """Rollouts of ``U`` updates for the recorder, ``[U, T, B, ...]`` (B = global env index)."""

    obs: Array  # [U, T, B, N, O] float32 raw
    action: Array  # [U, T, B, N] int32 (continuous: [U, T, B, N, A] float32 as the env took it)
    reward: Array  # [U, T, B, N] float32
    terminated: Array  # [U, T, B] bool
    truncated: Array  # [U, T, B] bool
    legal: Array  # [U, T, B, N, A] bool
    state: Array  # [U, T, B, S] float32
    log_prob: Array  # [U, T, B, N] float32
    step_count: Array  # [U, T, B] int32
    final_obs: Array  # [U, T, B, N, O] float32
    update: Array  # [U] int32 index of the update that produced the rollout


TRAJECTORY_SPECS = Trajectory(*([P(None, None, anakin.AXIS)] * 10), update=REPLICATED)


class UpdateMetrics(NamedTuple):
    """Per update (``[U]`` after a learner call), averaged over devices."""

    loss: LossInfo  # means over epochs and minibatches
    episode_return: Array  # [] mean return of episodes finished in the rollout (nan if none)
    episodes: Array  # [] int32 episodes finished in the rollout (all devices)


class Networks(NamedTuple):
    actor: nn.Module
    critic: nn.Module
    space: ActionSpace  # turns the actor's output into the action distribution


# --- learner -------------------------------------------------------------------------------------
def make_networks(spec: EnvSpec, config: Config) -> Networks:
    """The actor (categorical or tanh-Gaussian head, from ``spec``) and critic modules."""
    space = ActionSpace.of(spec)
    return Networks(
        actor=space.actor(config.network.actor_hidden),
        critic=Critic(config.network.critic_hidden),
        space=space,
    )


def learning_rate(config: Config) -> float | optax.Schedule:
    """``system.lr``, or with ``decay_lr`` a linear decay to 0 over all minibatch steps."""
    system = config.system
    if not system.decay_lr:
        return system.lr
    return linear_decay(system.lr, config.num_updates * system.ppo_epochs * system.num_minibatches)


def optimiser(config: Config) -> optax.GradientTransformation:
    """The one optimiser factory with PPO's Adam eps (1e-5)."""
    return make_optimiser(learning_rate(config), config.system.max_grad_norm, eps=PPO_ADAM_EPS)


def env_step(
    vec: VecEnv, carry: Any, dist: Any, value: Array, final_value: Callable[[Any], Array]
) -> tuple[Any, tuple[Transition, Any]]:
    """The policy-independent half of one rollout step: sample, step the envs, record.

    Shared by the feed-forward and the recurrent learners.

    Args:
        vec: the local envs.
        carry: a learner state with ``vstate``, ``timestep`` and ``env_keys`` (any NamedTuple).
        dist: the action distribution of ``carry.timestep`` [B, N].
        value: [B, N] critic value of ``carry.timestep``.
        final_value: ``final_value(vec_step) -> [B, N]``, the critic's value of the true next
            observation ``vec_step.final_obs`` (evaluated only on steps where an env truncated).

    Returns:
        (carry with the new vstate/timestep/env_keys, (Transition [B], EpisodeMetrics [B])).
    """
    new_carry, tr, out = sample_and_step(vec, carry, dist, value)
    truncated = out.timestep.truncated

    def final_values(_: Array) -> Array:
        return jnp.where(truncated[:, None], final_value(out), 0.0)

    final = jax.lax.cond(jnp.any(truncated), final_values, jnp.zeros_like, value)
    return new_carry, (tr._replace(final_value=final), out.metrics)


def sample_and_step(
    vec: VecEnv, carry: Any, dist: Any, value: Array
) -> tuple[Any, Transition, Any]:
    """:func:`env_step` without the truncation bootstrap: ``(carry, transition, vec_step)``
    with ``transition.final_value`` zero and the VecEnv's step output (``final_obs``,
    ``final_state``, ``metrics``) for the caller to bootstrap from."""
    ts = carry.timestep
    keys = jax.vmap(jax.random.split)(carry.env_keys)  # [B, 2, 2]
    action = jax.vmap(lambda k, d: d.sample(k))(keys[:, 1], dist)  # raw, per-env keys
    vstate, out = vec.step(carry.vstate, dist.to_env(action))
    nts = out.timestep
    tr = Transition(
        obs=ts.obs, legal=ts.legal, state=ts.state, action=action, reward=nts.reward,
        terminated=nts.terminated, truncated=nts.truncated,
        log_prob=dist.log_prob(action), value=value, final_value=jnp.zeros_like(value),
        step_count=ts.step_count, final_obs=out.final_obs,
    )  # fmt: skip
    return carry._replace(vstate=vstate, timestep=nts, env_keys=keys[:, 0]), tr, out


def make_rollout(
    vec: VecEnv, nets: Networks, config: Config
) -> Callable[[Params, LearnerState], tuple[LearnerState, Transition, Array]]:
    """``rollout(params, state) -> (state, transitions [T, B], (last_value [B, N], metrics))``.

    ``last_value`` is the critic's value of the observation after the last step (the bootstrap
    of the final GAE step); ``metrics`` are the VecEnv's ``EpisodeMetrics`` ``[T, B]``.
    """
    system = config.system

    def critic_on(params: Params, obs: Array, state: Array) -> Array:
        return nets.critic.apply(params.critic, network_inputs(obs, state, system)[1])

    def step(params: Params, carry: LearnerState, _: Any) -> tuple[LearnerState, Transition]:
        ts = carry.timestep
        actor_in, critic_in = network_inputs(ts.obs, ts.state, system)
        dist = nets.space.distribution(nets.actor.apply(params.actor, actor_in), ts.legal)
        value = nets.critic.apply(params.critic, critic_in)

        def final_value(out: Any) -> Array:
            return critic_on(params, out.final_obs, out.final_state)

        return env_step(vec, carry, dist, value, final_value)

    def rollout(params: Params, state: LearnerState) -> tuple[LearnerState, Transition, Any]:
        state, (traj, metrics) = jax.lax.scan(
            lambda c, x: step(params, c, x), state, None, length=system.rollout_length
        )
        last = critic_on(params, state.timestep.obs, state.timestep.state)
        return state, traj, (last, metrics)

    return rollout


LossFn = Callable[[Params, Any, Array], tuple[Array, LossInfo]]
"""``loss(params, minibatch, adv_stats [2]) -> (loss, LossInfo)``."""


def make_ppo_update(
    config: Config,
    space: ActionSpace,
    rollout: Callable[[Params, Any], tuple[Any, Transition, Any]],
    to_batch: Callable[[Transition, Array, Any], Any],
    minibatches: Callable[[Array, Any], Any],
    loss: LossFn,
    advantage: Callable[[Any], Array],
    return_trajectories: bool,
) -> Callable[[Any, Any], tuple[Any, tuple[UpdateMetrics, Any]]]:
    """One PPO update from its parts (shared by the feed-forward and recurrent learners).

    Args:
        config: the run config (system and optimiser settings).
        space: the action space (recorded actions are squashed through it).
        rollout: ``rollout(params, state) -> (state, Transition [T, B], (last_value, metrics))``.
        to_batch: ``to_batch(traj, last_value, state_before_rollout) -> batch``.
        minibatches: ``minibatches(key, batch) -> [M, ...]`` minibatches of one epoch.
        loss: the minibatch loss.
        advantage: the minibatch's advantages (normalised with statistics over all devices).
        return_trajectories: (static) also return the rollout as a :class:`Trajectory`.

    Must run inside :func:`anakin.shard_jit` (it uses ``pmean`` over the env axis).
    """
    system = config.system
    opt = optimiser(config)

    def minibatch(carry: tuple[Params, OptStates], mb: Any):
        params, opt_states = carry
        adv = advantage(mb)
        mean = anakin.pmean(jnp.mean(adv))
        mean_sq = anakin.pmean(jnp.mean(jnp.square(adv)))
        stats = jnp.stack([mean, jnp.sqrt(jnp.maximum(mean_sq - mean**2, 0.0))])
        grads, info = jax.grad(loss, has_aux=True)(params, mb, stats)
        grads, info = anakin.pmean((grads, info))
        a_upd, a_opt = opt.update(grads.actor, opt_states.actor, params.actor)
        c_upd, c_opt = opt.update(grads.critic, opt_states.critic, params.critic)
        params = Params(optax.apply_updates(params.actor, a_upd),
                        optax.apply_updates(params.critic, c_upd))  # fmt: skip
        return (params, OptStates(a_opt, c_opt)), info

    def epoch(carry: tuple[Params, OptStates], key: Array, batch: Any):
        return jax.lax.scan(minibatch, carry, minibatches(key, batch))

    def update_step(state: Any, _: Any):
        start = state
        state, traj, (last_value, ep) = rollout(state.params, state)
        batch = to_batch(traj, last_value, start)
        learner_key, epoch_key = jax.random.split(state.learner_key)
        keys = jax.random.split(epoch_key, system.ppo_epochs)
        (params, opt_states), info = jax.lax.scan(
            lambda c, k: epoch(c, k, batch), (state.params, state.opt_states), keys
        )
        n_done = anakin.psum(jnp.sum(ep.done))
        ret_sum = anakin.psum(jnp.sum(jnp.where(ep.done, ep.episode_return, 0.0)))
        metrics = UpdateMetrics(
            loss=jax.tree.map(jnp.mean, info),
            episode_return=jnp.where(n_done > 0, ret_sum / jnp.maximum(n_done, 1), jnp.nan),
            episodes=n_done.astype(jnp.int32),
        )
        out = _trajectory(traj, state.update, space) if return_trajectories else None
        state = state._replace(
            params=params, opt_states=opt_states, learner_key=learner_key, update=state.update + 1
        )
        return state, (metrics, out)

    return update_step


def make_update_step(
    vec: VecEnv, nets: Networks, config: Config, return_trajectories: bool = False
) -> Callable[[LearnerState, Any], tuple[LearnerState, tuple[UpdateMetrics, Any]]]:
    """One PPO update (rollout, GAE, epochs x minibatches) on this device's envs.

    Must run inside :func:`anakin.shard_jit` (it uses ``pmean`` over the env axis).
    """
    system = config.system
    t, m = system.rollout_length, system.num_minibatches

    def time_minibatches(key: Array, batch: Batch) -> Batch:
        idx = jax.random.permutation(key, t).reshape(m, t // m)
        return jax.tree.map(lambda x: x[idx], batch)  # [M, T/M, B, ...]

    return make_ppo_update(
        config, nets.space, make_rollout(vec, nets, config),
        lambda traj, last_value, _: make_batch(traj, last_value, system), time_minibatches,
        lambda params, mb, stats: ppo_loss(params, mb, nets, system, stats),
        lambda mb: mb.advantage, return_trajectories,
    )  # fmt: skip


def _trajectory(traj: Transition, update: Array, space: ActionSpace) -> Trajectory:
    return Trajectory(
        obs=traj.obs, action=space.to_env(traj.action), reward=traj.reward, terminated=traj.terminated,
        truncated=traj.truncated, legal=traj.legal, state=traj.state, log_prob=traj.log_prob,
        step_count=traj.step_count, final_obs=traj.final_obs, update=update,
    )  # fmt: skip


# --- assembly ------------------------------------------------------------------------------------
class Learner(NamedTuple):
    """A built IPPO learner (or recurrent IPPO's: same interface): frozen bundle of bound functions.

    ``init(key) -> LearnerState`` (placed on the mesh);
    ``learn(state) -> (state, UpdateMetrics [U], Trajectory [U, T, B] | None)`` runs
    ``config.updates_per_call`` updates in one jitted call (``state`` is donated).
    """

    config: Config
    spec: EnvSpec
    mesh: jax.sharding.Mesh
    nets: Networks
    init: Callable[[Array], LearnerState]
    learn: Callable[[LearnerState], tuple[LearnerState, UpdateMetrics, Trajectory | None]]


def make_train(
    config: Config,
    *,
    mesh: jax.sharding.Mesh | None = None,
    return_trajectories: bool = False,
    updates_per_call: int | None = None,
    autoreset: str = "fast",
) -> Learner:
    """Build the learner for ``config`` on ``mesh`` (default: all devices, of every process).

    Args:
        config: the resolved run config.
        mesh: from :func:`anakin.make_mesh`.
        return_trajectories: (static) also return the rollouts of every update, ``[U, T, B]``.
        updates_per_call: U, default ``config.updates_per_call``.
        autoreset: the VecEnv auto-reset scheme ("fast" or "naive", for benchmarks).

    Raises:
        ConfigError: if ``arch.num_envs`` does not split over the devices, or envs x rollout x
            agents does not fit int32.
    """
    mesh = anakin.make_mesh() if mesh is None else mesh
    env, local = learner_envs(config, mesh)
    nets = make_networks(env.spec, config)
    vec = VecEnv(env, local, autoreset=autoreset)
    update_step = make_update_step(vec, nets, config, return_trajectories)
    learn = shard_learn(update_step, config, mesh, LEARNER_SPECS, return_trajectories,
                        updates_per_call)  # fmt: skip
    init = _make_init(VecEnv(env, config.arch.num_envs), nets, config, mesh)
    return Learner(config, env.spec, mesh, nets, init, learn)


def learner_envs(config: Config, mesh: jax.sharding.Mesh) -> tuple[Any, int]:
    """The env of ``config`` and the number of envs on each device of ``mesh``.

    Raises:
        ConfigError: if ``arch.num_envs`` does not split over the devices, or envs x rollout x
            agents does not fit int32.
    """
    env = make_env(config.env.env_name, config.env.scenario)
    agents = env.spec.num_agents
    require("arch.num_envs", config.arch.num_envs,
            config.steps_per_update * agents <= INT32_MAX,
            f"num_envs x system.rollout_length x {agents} agents <= {INT32_MAX}",
            f"arch.num_envs={max(1, INT32_MAX // (agents * config.system.rollout_length))}")
    return env, anakin.local_count(config.arch.num_envs, mesh, "arch.num_envs")


def shard_learn(
    update_step: Callable,
    config: Config,
    mesh: jax.sharding.Mesh,
    specs: Any,
    return_trajectories: bool,
    updates_per_call: int | None,
) -> Callable:
    """The jitted, sharded ``learn(state)``: ``U`` updates in one ``lax.scan``."""
    u = config.updates_per_call if updates_per_call is None else updates_per_call

    def learn_local(state: Any):
        state, (metrics, traj) = jax.lax.scan(update_step, state, None, length=u)
        return state, metrics, traj

    traj_specs = TRAJECTORY_SPECS if return_trajectories else None
    return anakin.shard_jit(learn_local, mesh, (specs,), (specs, REPLICATED, traj_specs),
                            donate=(0,))  # fmt: skip


def _make_init(vec: VecEnv, nets: Networks, config: Config, mesh) -> Callable:
    opt = optimiser(config)

    def init_global(key: Array) -> LearnerState:
        k_env, k_act, k_learn, k_actor, k_critic = jax.random.split(key, 5)
        vstate, ts = vec.reset(k_env)
        actor_in, critic_in = network_inputs(ts.obs[0], ts.state[0], config.system)
        params = Params(nets.actor.init(k_actor, actor_in), nets.critic.init(k_critic, critic_in))
        opt_states = OptStates(opt.init(params.actor), opt.init(params.critic))
        env_keys = jax.random.split(k_act, vec.num_envs)
        return LearnerState(
            params, opt_states, vstate, ts, env_keys, k_learn, jnp.zeros((), jnp.int32)
        )

    return anakin.jit_sharded(init_global, mesh, LEARNER_SPECS)  # key -> LearnerState
