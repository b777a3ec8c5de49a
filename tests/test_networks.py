"""Networks: the masked categorical respects the mask; the tanh-Gaussian's density and bounds;
the GRU resets at episode starts and equals flax's scanned GRUCell (parameters, outputs,
gradients); the recurrent actor and critic of recurrent IPPO."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from marlvault.networks import (
    ActionSpace,
    Actor,
    Critic,
    GRUActionNetwork,
    MaskedCategorical,
    RecurrentNetwork,
    ScannedRNN,
    TanhGaussian,
)


def _random_masks(key, shape):
    mask = jax.random.bernoulli(key, 0.4, shape)
    return mask.at[..., 0].set(mask[..., 0] | ~mask.any(-1))  # at least one legal action


def test_masked_categorical_never_samples_illegal():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    legal = _random_masks(k1, (64, 3, 6))
    # logits strongly favour the illegal actions
    logits = jnp.where(legal, -5.0, 5.0) + jax.random.normal(k2, legal.shape)

    @jax.jit
    def all_legal(logits, legal, key):
        many = jnp.broadcast_to(legal, (200, *legal.shape))  # 200 draws of each
        dist = MaskedCategorical.from_logits(jnp.broadcast_to(logits, many.shape), many)
        taken = jnp.take_along_axis(many, dist.sample(key)[..., None], axis=-1)
        mode = MaskedCategorical.from_logits(logits, legal).mode()
        return taken.all() & jnp.take_along_axis(legal, mode[..., None], -1).all()

    assert bool(all_legal(logits, legal, k3))


def test_masked_categorical_probabilities_and_entropy_on_legal_subset():
    legal = jnp.array([[True, False, True, True], [False, False, True, False]])
    logits = jnp.array([[0.1, 9.0, -0.3, 1.2], [3.0, 2.0, 0.5, 1.0]])
    dist = MaskedCategorical.from_logits(logits, legal)
    probs = jnp.exp(dist.log_probs())
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert float(probs[0, 1]) == 0.0
    ref = jax.nn.softmax(jnp.array([0.1, -0.3, 1.2]))
    np.testing.assert_allclose(probs[0, jnp.array([0, 2, 3])], ref, rtol=1e-6)
    np.testing.assert_allclose(dist.entropy()[0], -(ref * jnp.log(ref)).sum(), rtol=1e-5)
    np.testing.assert_allclose(dist.entropy()[1], 0.0, atol=1e-6)  # one legal action
    np.testing.assert_allclose(dist.log_prob(jnp.array([3, 2])), jnp.log(jnp.array([ref[2], 1.0])),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_heads_shapes():
    x = jnp.ones((5, 2, 7))
    actor, critic = Actor(4, (16,)), Critic((16,))
    k = jax.random.PRNGKey(0)
    assert actor.apply(actor.init(k, x), x).shape == (5, 2, 4)
    assert critic.apply(critic.init(k, x), x).shape == (5, 2)


def test_scanned_rnn_resets_carry_at_episode_start():
    t, b, f, h = 6, 3, 4, 8
    x = jax.random.normal(jax.random.PRNGKey(1), (t, b, f))
    reset = jnp.zeros((t, b), bool).at[3].set(True)
    rnn = ScannedRNN(h)
    carry = ScannedRNN.initialize_carry((b,), h)
    params = rnn.init(jax.random.PRNGKey(2), carry, (x, reset))
    _, y = rnn.apply(params, carry, (x, reset))
    # the steps after the reset equal a fresh run on those steps
    _, y_fresh = rnn.apply(params, carry, (x[3:], jnp.zeros((t - 3, b), bool)))
    np.testing.assert_allclose(y[3:], y_fresh, rtol=1e-5, atol=1e-6)
    # and without the reset the history matters
    _, y_noreset = rnn.apply(params, carry, (x, jnp.zeros((t, b), bool)))
    assert not np.allclose(y_noreset[3:], y_fresh)


class _ResetGRU(nn.Module):  # its name gives the parameters their scope, Scan_ResetGRU_0
    """What ScannedRNN computed before 2026-11: flax's GRUCell, carry zeroed where reset."""

    hidden_size: int

    @nn.compact
    def __call__(self, h, inputs):
        x, reset = inputs
        h = jnp.where(reset[..., None], jnp.zeros_like(h), h)
        return nn.GRUCell(self.hidden_size)(h, x)


class _FlaxScannedRNN(nn.Module):
    hidden_size: int

    @nn.compact
    def __call__(self, h, inputs):
        return nn.scan(_ResetGRU, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=0, out_axes=0)(self.hidden_size)(h, inputs)


def test_scanned_rnn_equals_flax_scanned_gru_cell():
    """Same parameter tree and initial values as ``nn.scan(GRUCell)``; same outputs, final carry
    and gradients (parameters, inputs, initial carry) to float32 rounding, with resets inside
    the sequence and an extra batch axis."""
    t, b, n, f, h = 9, 3, 2, 5, 16
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    x = jax.random.normal(keys[0], (t, b, n, f))
    h0 = jax.random.normal(keys[1], (b, n, h))
    reset = jax.random.bernoulli(keys[2], 0.25, (t, b, n))
    ours, ref = ScannedRNN(h), _FlaxScannedRNN(h)
    params = ours.init(keys[3], h0, (x, reset))
    ref_params = ref.init(keys[3], h0, (x, reset))
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)

    def loss(module):
        def f(p, x, h0):
            h_last, y = module.apply(p, h0, (x, reset))
            return jnp.sum(jnp.sin(y)) + jnp.sum(h_last ** 2)
        return f

    for a, r in zip(ours.apply(params, h0, (x, reset)), ref.apply(params, h0, (x, reset)),
                    strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)
    grads = jax.grad(loss(ours), argnums=(0, 1, 2))(params, x, h0)
    ref_grads = jax.grad(loss(ref), argnums=(0, 1, 2))(params, x, h0)
    jax.tree.map(lambda a, r: np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5),
                 grads, ref_grads)


def test_gru_action_network_shapes():
    net = GRUActionNetwork(5, (16,), 8)
    x, reset = jnp.ones((4, 2, 3, 7)), jnp.zeros((4, 2, 3), bool)
    h = ScannedRNN.initialize_carry((2, 3), 8)
    params = net.init(jax.random.PRNGKey(0), h, (x, reset))
    h2, q = net.apply(params, h, (x, reset))
    assert q.shape == (4, 2, 3, 5) and h2.shape == (2, 3, 8)


def test_recurrent_network_with_a_continuous_head():
    """MLP -> GRU -> the ActionSpace's continuous head (mean, log-std) under ``head``."""
    x, reset = jnp.ones((4, 2, 3, 7)), jnp.zeros((4, 2, 3), bool)
    h = ScannedRNN.initialize_carry((2, 3), 8)
    net = RecurrentNetwork(ActionSpace(5, continuous=True).actor(()), (16,), 8)
    params = jax.jit(net.init)(jax.random.PRNGKey(0), h, (x, reset))
    assert set(params["params"]) == {"MLPTorso_0", "ScannedRNN_0", "head"}
    h2, (mean, log_std) = jax.jit(net.apply)(params, h, (x, reset))
    assert h2.shape == (2, 3, 8) and mean.shape == log_std.shape == (4, 2, 3, 5)


# --- continuous actions: the tanh-squashed Gaussian ---------------------------------------------
def _tanh_gaussian(low: float = 0.0, high: float = 1.0) -> TanhGaussian:
    mean = jnp.array([[0.3, -1.2], [2.0, 0.0]], jnp.float32)  # [N=2, A=2]
    log_std = jnp.array([[-0.5, 0.2], [-0.5, 0.2]], jnp.float32)
    return TanhGaussian(mean, log_std, low, high)


def test_tanh_gaussian_log_prob_is_the_density_of_the_squashed_action():
    """Change of variables by hand: log N(u) - log |da/du| per component, summed."""
    dist = _tanh_gaussian(low=-2.0, high=4.0)
    u = jnp.array([[0.1, -3.0], [1.5, 0.7]], jnp.float32)
    mean, std = np.asarray(dist.mean, np.float64), np.exp(np.asarray(dist.log_std, np.float64))
    u64 = np.asarray(u, np.float64)
    gauss = -0.5 * ((u64 - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    jac = (4.0 - -2.0) / 2.0 * (1.0 - np.tanh(u64) ** 2)  # da/du
    want = (gauss - np.log(jac)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(u), want, rtol=1e-5)
    assert np.isfinite(dist.log_prob(jnp.full((2, 2), 30.0))).all()  # saturated tanh


def test_tanh_gaussian_actions_stay_in_bounds_and_invert():
    dist = _tanh_gaussian(low=-2.0, high=4.0)
    u = dist.sample(jax.random.PRNGKey(0))
    a = dist.to_env(u)
    assert a.shape == (2, 2) and a.dtype == jnp.float32
    np.testing.assert_allclose(dist.from_env(a), u, rtol=1e-4, atol=1e-4)
    extreme = dist.to_env(jnp.array([[-50.0, 50.0], [0.0, 0.0]]))
    np.testing.assert_allclose(extreme, [[-2.0, 4.0], [1.0, 1.0]])
    e = dist.entropy()
    want = (np.asarray(dist.log_std) + 0.5 * np.log(2 * np.pi * np.e)).sum(-1)
    np.testing.assert_allclose(e, want, rtol=1e-6)


def test_action_space_uniform_actions_cover_the_box():
    space = ActionSpace(3, continuous=True, low=0.0, high=1.0)
    legal = jnp.ones((4096, 2, 3), bool)
    a = np.asarray(space.to_env(space.uniform_raw(jax.random.PRNGKey(1), legal)))
    assert a.shape == (4096, 2, 3) and a.min() >= 0.0 and a.max() <= 1.0
    hist = np.histogram(a, bins=4, range=(0, 1))[0] / a.size
    np.testing.assert_allclose(hist, 0.25, atol=0.02)


def test_gaussian_actor_log_std_is_one_learned_vector():
    actor = ActionSpace(3, continuous=True).actor((8,))
    params = actor.init(jax.random.PRNGKey(0), jnp.zeros((5, 2, 4)))
    mean, log_std = actor.apply(params, jnp.ones((5, 2, 4)))
    assert mean.shape == log_std.shape == (5, 2, 3)
    assert params["params"]["log_std"].shape == (3,)
    np.testing.assert_array_equal(log_std, 0.0)
