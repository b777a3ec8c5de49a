"""Behaviour cloning (BC) for discrete or continuous multi-agent actions, feed-forward or
recurrent.

One network shared by all agents (agent ids in the input) maximises the log-likelihood of the
recorded actions::

    loss = - mean_{steps in an episode, agents} log pi(a_t | o_t, legal_t)

Discrete actions: ``pi`` is a categorical restricted to the legal actions. Continuous actions
(``(B, T, N, A)`` floats in ``[low, high]``): ``pi`` is a tanh-squashed diagonal Gaussian
(:class:`~marlvault.networks.TanhGaussian`, the same distribution as the online PPO actors):
the network outputs the mean of the raw action ``u``, the log-std is one learned vector per
action component independent of the input (as :class:`~marlvault.networks.GaussianActor`), and
the recorded action ``a`` is mapped back to ``u = atanh(2 (a - low) / (high - low) - 1)`` (clipped
a hair inside the bounds) and scored by the density of the *squashed* action, i.e. the Gaussian
density of ``u`` minus ``log |da/du|``. This is Gaussian maximum likelihood, not the deterministic
mean-squared-error regression some continuous BC baselines use; the learnt log-std is only used
when evaluation samples (``arch.eval_greedy=false``). Acting greedily takes the squashed mean.

Feed-forward BC trains on transitions (every step of the vault, ``seq_len = 1``); recurrent BC
on windows of ``seq_len`` steps that never cross an episode boundary (``offline/dataset.py``),
with the GRU started from zeros at each window start. Steps whose recorded action is illegal under
the recorded mask (corrupt data) are left out and counted. Discrete acting is greedy over legal
actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from marlvault.config import require_range
from marlvault.networks import (
    ActionSpace,
    Actor,
    GaussianActor,
    GRUActionNetwork,
    RecurrentNetwork,
    ScannedRNN,
)
from marlvault.offline.common import (
    Algorithm,
    AlgorithmEntry,
    DataNeeds,
    check_learner_sizes,
    choose,
    gradient_step,
    greedy,
    gru_act,
    gru_sequence,
    init_gru_network,
    mask_illegal,
    masked_mean,
)
from marlvault.offline.dataset import DataSpec, SequenceBatch
from marlvault.optim import make_optimiser

Array = jax.Array


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of BC."""

    recurrent: bool = False
    """Use a GRU policy trained on windows (else an MLP on single steps)."""
    hidden: tuple[int, ...] = (128, 128)
    """MLP torso sizes (recurrent: the torso before the GRU)."""
    rnn_size: int = 64
    """GRU width (recurrent only)."""
    seq_len: int = 20
    """Window length for the recurrent policy (feed-forward uses single steps)."""
    batch_size: int = 64
    """Windows (recurrent) or transitions x 16 (feed-forward) per update."""
    lr: float = 3e-4
    """Adam learning rate."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    num_updates: int = 20_000
    """Gradient updates in the whole run."""

    def __post_init__(self) -> None:
        check_learner_sizes(self, self.items_per_batch * self.window_len)
        require_range("system", self, "lr", "max_grad_norm", lo=0.0, lo_open=True)

    @property
    def window_len(self) -> int:
        """L of the training windows."""
        return self.seq_len if self.recurrent else 1

    @property
    def items_per_batch(self) -> int:
        """Windows per update (feed-forward draws 16x more single steps for the same cost)."""
        return self.batch_size if self.recurrent else self.batch_size * 16


class TrainState(NamedTuple):
    params: Any  # network parameters
    opt_state: Any  # optax state
    step: Array  # [] int32 updates done


def action_space(spec: DataSpec) -> ActionSpace:
    """The dataset's action space (continuous: with its bounds)."""
    return ActionSpace(spec.action_dim, spec.continuous, spec.action_low, spec.action_high)


def _network(config: Config, spec: DataSpec) -> nn.Module:
    if spec.continuous:  # outputs (mean, log_std)
        if config.recurrent:
            return RecurrentNetwork(GaussianActor(spec.action_dim, ()), config.hidden,
                                    config.rnn_size)
        return GaussianActor(spec.action_dim, config.hidden)
    if config.recurrent:
        return GRUActionNetwork(spec.action_dim, config.hidden, config.rnn_size)
    return Actor(spec.action_dim, config.hidden)


def policy_logits(net: nn.Module, params: Any, config: Config, batch: SequenceBatch) -> Any:
    """[L, K, N, A] unmasked logits for the window steps; continuous: the pair (mean,
    log_std), both [L, K, N, A]. BC's own windows carry no next step (``DataNeeds.next_step``);
    from windows that do, position ``L`` is left out."""
    obs = batch.obs[:batch.mask.shape[0]]  # [L, K, N, O']
    if not config.recurrent:
        return net.apply(params, obs)
    return gru_sequence(net, params, obs, config.rnn_size)


def bc_loss(logits: Array, legal: Array, actions: Array, mask: Array) -> tuple[Array, dict]:
    """Masked negative log-likelihood of the recorded actions.

    Args:
        logits: [L, K, N, A] float32 raw policy logits.
        legal: [L, K, N, A] float32 legal-action masks.
        actions: [L, K, N] int32 recorded actions.
        mask: [L, K] float32, 1 for steps inside the window's episode.

    Returns:
        the scalar loss and metrics (loss, accuracy, fraction of illegal recorded actions).
    """
    logp = jax.nn.log_softmax(mask_illegal(logits, legal), axis=-1)
    logp_a = jnp.take_along_axis(logp, actions[..., None], axis=-1)[..., 0]  # [L, K, N]
    was_legal = jnp.take_along_axis(legal, actions[..., None], axis=-1)[..., 0] > 0
    weight = mask[..., None] * was_legal
    loss = -masked_mean(logp_a, weight)
    acc = masked_mean((greedy(logits, legal) == actions).astype(jnp.float32), weight)
    illegal = masked_mean(1.0 - was_legal.astype(jnp.float32), mask[..., None])
    return loss, {"loss": loss, "accuracy": acc, "illegal_actions": illegal}


def continuous_bc_loss(out: tuple[Array, Array], actions: Array, mask: Array,
                       space: ActionSpace) -> tuple[Array, dict]:
    """Masked negative log-likelihood of recorded continuous actions under the tanh-Gaussian.

    Args:
        out: (mean, log_std), each [L, K, N, A] float32: the raw (pre-tanh) Gaussian.
        actions: [L, K, N, A] float32 recorded actions in ``[space.low, space.high]``.
        mask: [L, K] float32, 1 for steps inside the window's episode.
        space: the continuous action space (bounds).

    Returns:
        the scalar loss and metrics (loss, mean squared error of the greedy action, mean log-std).
    """
    dist = space.distribution(out, None)
    logp = dist.log_prob(dist.from_env(actions))  # [L, K, N]
    weight = mask[..., None]
    loss = -masked_mean(logp, weight)
    mse = masked_mean(jnp.mean(jnp.square(dist.to_env(dist.mode()) - actions), axis=-1), weight)
    return loss, {"loss": loss, "action_mse": mse, "log_std": jnp.mean(out[1])}


def make_update_step(config: Config, spec: DataSpec):
    """``update(state, batch) -> (state, metrics)`` (pure, jittable)."""
    net, tx = _network(config, spec), make_optimiser(config.lr, config.max_grad_norm)

    def update(state: TrainState, batch: SequenceBatch) -> tuple[TrainState, dict]:
        def loss_fn(params: Any) -> tuple[Array, dict]:
            out = policy_logits(net, params, config, batch)
            if spec.continuous:
                return continuous_bc_loss(out, batch.actions, batch.mask, action_space(spec))
            return bc_loss(out, batch.legal[:batch.mask.shape[0]], batch.actions, batch.mask)

        params, opt_state, metrics = gradient_step(tx, loss_fn, state.params, state.opt_state)
        return TrainState(params, opt_state, state.step + 1), metrics

    return update


def make_init(config: Config, spec: DataSpec):
    """``init(key) -> TrainState``."""
    net, tx = _network(config, spec), make_optimiser(config.lr, config.max_grad_norm)

    def init(key: Array) -> TrainState:
        if config.recurrent:
            params = init_gru_network(net, key, spec, config.rnn_size)
        else:
            params = net.init(key, jnp.zeros((1, 1, spec.num_agents, spec.input_dim)))
        return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))

    return init


def make_act(config: Config, spec: DataSpec):
    """``act(params, hidden, obs [E, N, O'], legal [E, N, A], reset [E], key=None)
    -> (hidden, actions)``: greedy, or sampled from the policy when ``key`` is given.

    Continuous: actions are [E, N, A] environment actions, the squashed mean (greedy) or a
    squashed sample; ``legal`` is ignored."""
    net = _network(config, spec)
    space = action_space(spec)

    def act(params: Any, hidden: Array, obs: Array, legal: Array, reset: Array, key=None):
        if spec.continuous:
            if config.recurrent:
                resets = jnp.broadcast_to(reset[:, None], obs.shape[:2])[None]
                hidden, out = net.apply(params, hidden, (obs[None], resets))
                out = jax.tree.map(lambda x: x[0], out)
            else:
                out = net.apply(params, obs)
            dist = space.distribution(out, legal)
            return hidden, dist.to_env(dist.mode() if key is None else dist.sample(key))
        if not config.recurrent:
            return hidden, choose(net.apply(params, obs), legal, key)
        return gru_act(net, params, hidden, obs, legal, reset, key)

    return act


def data_needs(config: Config) -> DataNeeds:
    """Feed-forward: every single step (stride 1); recurrent: non-overlapping windows. Discrete
    and continuous actions; no step past the window (nothing is bootstrapped)."""
    return DataNeeds(config.window_len, 0 if config.recurrent else 1, False, continuous_ok=True,
                     next_step=False)


def make_algorithm(config: Config, spec: DataSpec) -> Algorithm:
    """The BC bundle the offline trainer runs."""
    needs = data_needs(config)
    return Algorithm(
        name="bc",
        seq_len=needs.seq_len,
        stride=needs.stride,
        batch_size=config.items_per_batch,
        init=make_init(config, spec),
        update=make_update_step(config, spec),
        params=lambda state: state.params,
        init_hidden=lambda e: ScannedRNN.initialize_carry((e, spec.num_agents), config.rnn_size),
        act=make_act(config, spec),
    )


ENTRY = AlgorithmEntry("bc", Config, data_needs, make_algorithm,
                       "Behaviour cloning, discrete or continuous actions (system.recurrent=true "
                       "for a GRU policy).")

__all__ = ["ENTRY", "Config", "TrainState", "action_space", "bc_loss", "continuous_bc_loss", "data_needs", "make_algorithm", "make_init",
           "make_update_step", "policy_logits"]
