"""Continuous-action offline actor–critics (IDDPG+BC, IDDPG+CQL, MADDPG+CQL, OMAR): their loss
terms on hand-made batches against values computed by hand, refusal of discrete data, and a few
updates of each on an OG-MARL-layout vault written by flashbax itself (float actions
``(B, T, N, A)``, no ``infos.legals``, bounds assumed ``[-1, 1]``).

Sizes are tiny and every algorithm trains on the same vault, so the whole file compiles little.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlvault.errors import DatasetError
from marlvault.offline import actor_critic as ac
from marlvault.offline import dataset as ds
from marlvault.offline import iddpg_bc, omar
from marlvault.offline.train import ALGORITHMS, load_config, open_dataset
from marlvault.offline.windows import SequenceBatch
from marlvault.vault.vault import Vault

from .helpers import handmade_tree

fbx_vault = pytest.importorskip("flashbax.vault.vault")
from flashbax.buffers.trajectory_buffer import TrajectoryBufferState  # noqa: E402

B, T, N, O, A, S = 2, 24, 2, 3, 2, 4  # noqa: E741
CONTINUOUS = ["iddpg-bc", "iddpg-cql", "maddpg-cql", "omar"]
TINY = {"hidden": (8,), "rnn_size": 8, "critic_hidden": (16,), "seq_len": 3, "batch_size": 4,
        "num_updates": 3}
EXTRA = {"iddpg-cql": {"num_ood_actions": 2}, "maddpg-cql": {"num_ood_actions": 2},
         "omar": {"num_ood_actions": 2, "search_iters": 1, "search_samples": 3,
                  "search_elites": 2}}


def og_marl_tree(seed: int = 0) -> dict:
    """OG-MARL's continuous layout: float actions in [-1, 1], no legals, a global state."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(B, T, N, O)).astype(np.float32)
    actions = np.tanh(obs[..., :A]).astype(np.float32)
    terminals = np.zeros((B, T, N), np.float32)
    truncations = np.zeros((B, T, N), np.float32)
    terminals[:, 7] = 1.0
    truncations[:, 15] = 1.0
    return {
        "observations": obs,
        "actions": actions,
        "rewards": -np.sum(np.square(actions - 0.5), axis=-1).astype(np.float32),
        "terminals": terminals,
        "truncations": truncations,
        "infos": {"state": obs.reshape(B, T, -1)[..., :S].copy()},
    }


@pytest.fixture(scope="module")
def fbx_path(tmp_path_factory) -> str:
    """The tree written by flashbax's own Vault, as OG-MARL's recorders did."""
    tree = og_marl_tree()
    path = str(tmp_path_factory.mktemp("og") / "vaults" / "mamujoco.vlt" / "Good")
    parent, uid = os.path.split(path)
    root, name = os.path.split(parent)
    vault = fbx_vault.Vault(name, experience_structure=tree, rel_dir=root, vault_uid=uid)
    state = TrajectoryBufferState(experience=tree, current_index=np.int32(T),
                                  is_full=np.bool_(False))
    assert vault.write(state) == T
    return path


def _batch(actions, rewards, terminal, target_mask, mask=None, obs_dim=1):
    """A hand-made SequenceBatch: actions [L, K, N, A]; obs zeros."""
    length, k, n = actions.shape[:3]
    return SequenceBatch(
        obs=jnp.zeros((length + 1, k, n, obs_dim)), legal=jnp.ones((length + 1, k, n, 1)),
        state=jnp.zeros((length + 1, k, 0)), actions=jnp.asarray(actions),
        rewards=jnp.asarray(rewards), terminal=jnp.asarray(terminal),
        truncated=jnp.zeros(terminal.shape),
        mask=jnp.ones(terminal.shape) if mask is None else jnp.asarray(mask),
        target_mask=jnp.asarray(target_mask),
    )


# --- shared pieces ---------------------------------------------------------------------------
def test_unit_actions_round_trip_and_centralised_features():
    a = jnp.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(ac.to_unit(a, 0.0, 1.0), [-1.0, -0.5, 1.0])
    np.testing.assert_allclose(ac.from_unit(ac.to_unit(a, 0.0, 1.0), 0.0, 1.0), a)
    own = jnp.array([[1.0], [2.0]])  # [N=2, A=1]
    others = jnp.array([[10.0], [20.0]])
    x = ac.centralised_features(jnp.zeros((2, 3)), jnp.array([7.0]), own, others)
    # agent 0 sees (s, own_0, other_1, id 0); agent 1 sees (s, other_0, own_1, id 1)
    np.testing.assert_allclose(x, [[7.0, 1.0, 20.0, 1.0, 0.0], [7.0, 10.0, 2.0, 0.0, 1.0]])


def test_td_targets_stop_at_terminals_not_truncations_and_masked_steps_are_left_out():
    q_next = jnp.array([[4.0, 4.0, 4.0], [3.0, 5.0, 9.0]])[:, :, None, None]  # [2, L=3, 1, 1]
    rewards = jnp.array([1.0, 1.0, 1.0])[:, None, None]
    terminal = jnp.array([0.0, 1.0, 0.0])[:, None]  # step 2 is a truncation: still bootstraps
    batch = _batch(jnp.zeros((3, 1, 1, 1)), rewards, terminal, jnp.array([[1.0], [1.0], [0.0]]))
    y = ac.td_targets(q_next, batch, 0.5)
    np.testing.assert_allclose(y[:, 0, 0], [1.0 + 0.5 * 3.0, 1.0, 1.0 + 0.5 * 4.0])
    q_data = jnp.array([[2.0, 0.0, 100.0], [3.0, 1.0, -100.0]])[:, :, None, None]
    td = ac.td_loss(q_data, y, batch.target_mask)  # step 2 has no known next observation
    by_hand = ((2.0 - 2.5) ** 2 + (0.0 - 1.0) ** 2) / 2 + ((3.0 - 2.5) ** 2 + 0.0) / 2
    np.testing.assert_allclose(float(td), by_hand, rtol=1e-6)


def test_continuous_cql_penalty_is_the_importance_sampled_log_sum_exp_by_hand():
    q_s = jnp.array([1.0, 2.0, -1.0, 0.5])
    log_p = jnp.array([-2 * math.log(2.0)] * 2 + [0.3, -0.7])
    got = jax.jit(ac.continuous_cql_penalty)(q_s, log_p, jnp.array(0.25))
    by_hand = math.log(sum(math.exp(q - lp) for q, lp in zip(q_s.tolist(), log_p.tolist(),
                                                                strict=True)) / 4) - 0.25
    np.testing.assert_allclose(float(got), by_hand, rtol=1e-6)
    pi = jnp.array([[0.2, -0.4]])  # [1, A=2]: 0.1-noise never reaches the bounds
    samples = jax.jit(ac.cql_samples, static_argnums=(2, 3))  # one compilation, not op by op
    actions, log_d = samples(jax.random.key(0), pi, 3, 0.1)
    assert actions.shape == (6, 1, 2) and float(jnp.abs(actions).max()) <= 1.0
    np.testing.assert_allclose(log_d[:3], -2 * math.log(2.0))  # uniform in the unit box
    eps = (actions[3:] - pi) / 0.1
    gauss = np.sum(-0.5 * np.square(eps) - math.log(0.1) - 0.5 * math.log(2 * math.pi), -1)
    np.testing.assert_allclose(log_d[3:], gauss, rtol=1e-5)

    # the regulariser: both critics' gaps on the same samples, masked mean, summed, weighted
    q_fn = lambda a: jnp.stack([a.sum(-1), 2.0 * a.sum(-1)])  # noqa: E731  [2, ...]
    pi = jnp.array([[[[0.1]]], [[[-0.3]]]])  # [L=2, K=1, N=1, A=1]
    data = jnp.array([[[[0.5]]], [[[0.0]]]])
    mask = jnp.array([[1.0], [0.0]])
    penalty, m = jax.jit(lambda k: ac.cql_regulariser(q_fn, q_fn(data), pi, mask, k, 4, 0.2, 5.0))(
        jax.random.key(3))
    a, lp = samples(jax.random.key(3), pi, 4, 0.2)
    a, lp = np.asarray(a[:, 0, 0, 0, 0]), np.asarray(lp[:, 0, 0, 0])  # step 0 only (masked)
    gaps = [math.log(np.mean(np.exp(c * a - lp))) - c * 0.5 for c in (1.0, 2.0)]
    np.testing.assert_allclose(float(m["cql_loss"]), sum(gaps), rtol=1e-5)
    np.testing.assert_allclose(float(penalty), 5.0 * sum(gaps), rtol=1e-5)


# --- IDDPG+BC ------------------------------------------------------------------------------------
def test_td3_bc_actor_loss_by_hand_and_lambda_carries_no_gradient():
    pi = jnp.array([[[[0.5, -0.5]], [[0.0, 1.0]]]])  # [L=1, K=2, N=1, A=2]
    data = jnp.array([[[[0.0, -0.5]], [[1.0, 1.0]]]])
    q1 = jnp.array([[[2.0], [-6.0]]])  # [1, 2, 1]
    mask = jnp.array([[1.0, 1.0]])
    loss, m = iddpg_bc.td3_bc_actor_loss(pi, q1, data, mask, alpha=2.5)
    lam = 2.5 / ((2.0 + 6.0) / 2)
    bc = ((0.25 + 0.0) / 2 + (1.0 + 0.0) / 2) / 2
    np.testing.assert_allclose(float(m["lambda"]), lam, rtol=1e-6)
    np.testing.assert_allclose(float(loss), -lam * (2.0 - 6.0) / 2 + bc, rtol=1e-6)
    grad = jax.grad(lambda q: iddpg_bc.td3_bc_actor_loss(pi, q, data, mask, 2.5)[0])(q1)
    np.testing.assert_allclose(grad, jnp.full_like(q1, -lam / 2), rtol=1e-6)


# --- OMAR ----------------------------------------------------------------------------------------
def test_zeroth_order_search_returns_the_best_sampled_action_on_a_quadratic():
    c = jnp.array([[0.3, -0.6], [-0.2, 0.9]])  # [points=2, A=2] optimum of each point

    def q(a):  # [M, 2, 2] -> [M, 2]
        return -jnp.sum(jnp.square(a - c), axis=-1)

    key = jax.random.key(5)
    search = jax.jit(omar.zeroth_order_search, static_argnums=(0, 2, 3, 4, 5, 6))
    best, best_q = search(q, key, c.shape, 1, 16, 4, 1.0)
    cand = jnp.clip(jax.random.normal(jax.random.split(key, 1)[0], (16, *c.shape)), -1.0, 1.0)
    idx = np.argmax(np.asarray(q(cand)), axis=0)  # by hand: the best of the 16 samples
    np.testing.assert_allclose(best, np.asarray(cand)[idx, np.arange(2)])
    np.testing.assert_allclose(best_q, np.asarray(q(cand)).max(axis=0), rtol=1e-6)
    refined, _ = search(q, key, c.shape, 5, 64, 8, 1.0)
    np.testing.assert_allclose(refined, c, atol=0.01)  # the search converges on the optimum


def test_omar_actor_loss_pulls_to_the_searched_action_only_when_it_is_better():
    pi = jnp.array([[[[0.0]], [[0.5]]]])  # [L=1, K=2, N=1, A=1]
    q1 = jnp.array([[[1.0], [2.0]]])
    searched = jnp.array([[[[1.0]], [[-1.0]]]])
    searched_q = jnp.array([[[3.0], [0.0]]])  # better for the first window only
    loss, m = omar.omar_actor_loss(pi, q1, searched, searched_q, jnp.ones((1, 2)), coe=0.7)
    pull = ((0.0 - 1.0) ** 2 + 0.0) / 2  # the second keeps its own action: no pull
    np.testing.assert_allclose(float(loss), 0.7 * pull - 0.3 * 1.5, rtol=1e-6)
    assert float(m["searched_better"]) == 0.5


# --- refusals and training -------------------------------------------------------------------
@pytest.mark.parametrize("algo", CONTINUOUS)
def test_discrete_data_is_refused_with_the_fix(algo, tmp_path):
    tree = handmade_tree()
    path = str(tmp_path / "lbf.vlt")
    with Vault.create(path, tree) as vault:
        vault.append(tree)
        vault.flush()
    config = load_config(algo, [f"vault={path}"])
    with pytest.raises(DatasetError, match=rf"{algo} learns from continuous.*fix: .*iql-cql"):
        open_dataset(algo, config)
    spec = ds.spec_from_tree(tree, "<test>", T, True)
    with pytest.raises(DatasetError, match="fix: train a discrete-action algorithm"):
        ALGORITHMS[algo].make(ALGORITHMS[algo].config(), spec)


def test_maddpg_needs_the_global_state(tmp_path):
    tree = og_marl_tree()
    del tree["infos"]
    path = str(tmp_path / "nostate.vlt")
    with Vault.create(path, tree) as vault:
        vault.append(tree)
        vault.flush()
    with pytest.raises(DatasetError, match=r"maddpg-cql needs the global state 'infos.state'.*"
                                           r"record with an environment that provides a state"):
        open_dataset("maddpg-cql", load_config("maddpg-cql", [f"vault={path}"]))


@pytest.mark.parametrize("algo", CONTINUOUS)
def test_trains_a_few_updates_on_a_flashbax_og_marl_vault(algo, fbx_path):
    entry = ALGORITHMS[algo]
    config = entry.config(**TINY, **EXTRA.get(algo, {}))
    needs = entry.data_needs(config)
    dataset = ds.OfflineDataset(fbx_path, ds.DatasetConfig(
        seq_len=needs.seq_len, stride=needs.stride, need_state=needs.need_state,
        continuous_ok=needs.continuous_ok, algorithm=algo, mode="stream", shuffle_windows=8))
    spec = dataset.spec
    assert spec.continuous and spec.bounds_assumed and not spec.has_legals
    if needs.obs_stats:  # iddpg-bc: as open_dataset does, from one streamed pass
        spec = dataclasses.replace(spec, obs_stats=dataset.obs_stats())
    algo_ = entry.make(config, spec)
    update = jax.jit(algo_.update)  # host batches: only the update compiles
    state = algo_.init(jax.random.key(0))  # eager, as the trainer: its ops are shared
    for _, batch in zip(range(3), dataset.batches(algo_.batch_size, seed=0), strict=False):
        state, metrics = update(state, batch)
    assert int(state.step) == 3
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    obs = jnp.ones((3, N, spec.input_dim))
    hidden = algo_.init_hidden(3)
    for key in (None, jax.random.key(2)):
        _, acts = algo_.act(algo_.params(state), hidden, obs, None, jnp.ones(3, bool), key)
        assert acts.shape == (3, N, A) and float(jnp.abs(acts).max()) <= 1.0
