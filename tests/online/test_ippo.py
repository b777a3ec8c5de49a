"""IPPO/MAPPO learner: GAE, shapes through updates, determinism, 4 devices == 1 device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lapack_calls import batched, lapack_calls

from marlvault.online import ippo, losses, rec_ippo

from .helpers import forced_devices_env, tiny_config, tiny_rec_config

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("multi_device_worker.py")


# --- GAE -----------------------------------------------------------------------------------------
def _gae_reference(r, v, v_next, term, trunc, gamma, lam):
    """Direct per-step computation, backwards in time, one scalar stream."""
    t_len = len(r)
    adv = np.zeros(t_len)
    running = 0.0
    for t in reversed(range(t_len)):
        bootstrap = 0.0 if term[t] else gamma * v_next[t]
        delta = r[t] + bootstrap - v[t]
        if term[t] or trunc[t]:
            running = delta
        else:
            running = delta + gamma * lam * running
        adv[t] = running
    return adv, adv + v


def test_gae_matches_per_step_computation_with_terminal_and_truncation():
    rng = np.random.default_rng(0)
    t_len, gamma, lam = 12, 0.9, 0.8
    r = rng.normal(size=t_len)
    v = rng.normal(size=t_len)
    v_next = rng.normal(size=t_len)  # value of the true next observation
    term = np.zeros(t_len, bool)
    trunc = np.zeros(t_len, bool)
    term[3] = True
    trunc[7] = True
    adv, target = losses.compute_gae(
        jnp.asarray(r, jnp.float32), jnp.asarray(v, jnp.float32),
        jnp.asarray(v_next, jnp.float32), jnp.asarray(term), jnp.asarray(term | trunc), gamma, lam,
    )  # fmt: skip
    ref_adv, ref_target = _gae_reference(r, v, v_next, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, ref_target, rtol=1e-5, atol=1e-5)
    # terminal: no bootstrap at all; truncation: bootstrap from the true next obs' value
    assert adv[3] == pytest.approx(r[3] - v[3], abs=1e-5)
    assert adv[7] == pytest.approx(r[7] + gamma * v_next[7] - v[7], abs=1e-5)


def test_gae_broadcasts_over_env_and_agent_axes():
    rng = np.random.default_rng(1)
    shape = (6, 3, 2)
    r, v, vn = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3))
    done = jnp.zeros(shape, bool).at[2, 1].set(True)
    adv, _ = losses.compute_gae(r, v, vn, done, done, 0.99, 0.95)
    ref, _ = _gae_reference(np.asarray(r[:, 1, 0]), np.asarray(v[:, 1, 0]),
                            np.asarray(vn[:, 1, 0]), np.asarray(done[:, 1, 0]),
                            np.zeros(6, bool), 0.99, 0.95)  # fmt: skip
    np.testing.assert_allclose(adv[:, 1, 0], ref, rtol=1e-5, atol=1e-5)


# --- learner -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def learner():
    return ippo.make_train(tiny_config(), return_trajectories=True, updates_per_call=2)


@pytest.fixture(scope="module")
def first_run(learner):
    return learner.learn(learner.init(jax.random.PRNGKey(3)))


def test_shapes_through_updates(learner, first_run):
    state, metrics, traj = first_run
    spec = learner.spec
    u, t, b, n = 2, 8, 4, spec.num_agents
    assert traj.obs.shape == (u, t, b, n, spec.obs_dim)
    assert traj.final_obs.shape == traj.obs.shape
    assert traj.action.shape == traj.reward.shape == traj.log_prob.shape == (u, t, b, n)
    assert traj.legal.shape == (u, t, b, n, spec.action_dim)
    assert traj.state.shape == (u, t, b, spec.state_dim)
    assert traj.terminated.shape == traj.truncated.shape == traj.step_count.shape == (u, t, b)
    assert traj.action.dtype == jnp.int32 and traj.terminated.dtype == jnp.bool_
    np.testing.assert_array_equal(traj.update, [0, 1])
    assert int(state.update) == 2
    assert metrics.loss.total_loss.shape == (u,)
    assert np.isfinite(np.asarray(metrics.loss.total_loss)).all()
    assert learner.config.steps_per_update == t * b


def test_rollout_is_consistent(first_run):
    _, _, traj = first_run
    legal_taken = jnp.take_along_axis(traj.legal, traj.action[..., None], -1)
    assert bool(legal_taken.all())
    assert bool((traj.log_prob <= 0).all())
    # the rollout continues: next obs == final obs where the episode did not end
    done = (traj.terminated | traj.truncated)[0, :-1]
    same = np.all(np.asarray(traj.obs[0, 1:] == traj.final_obs[0, :-1]), axis=(-1, -2))
    assert same[~np.asarray(done)].all()
    # the second update's rollout starts where the first ended
    np.testing.assert_array_equal(traj.step_count[1, 0], traj.step_count[0, -1] + 1)


def test_same_seed_same_parameters(learner, first_run):
    state_b, _, _ = learner.learn(learner.init(jax.random.PRNGKey(3)))
    leaves_a = jax.tree.leaves(first_run[0].params)
    for a, b in zip(leaves_a, jax.tree.leaves(state_b.params), strict=True):
        np.testing.assert_array_equal(a, b)
    state_c, _, _ = learner.learn(learner.init(jax.random.PRNGKey(4)))
    diffs = [not np.array_equal(a, c) for a, c in
             zip(leaves_a, jax.tree.leaves(state_c.params), strict=True)]  # fmt: skip
    assert any(diffs)


def test_parameters_change_and_stay_finite(learner, first_run):
    init = learner.init(jax.random.PRNGKey(3))
    trained = jax.tree.leaves(first_run[0].params)
    moved = [not np.allclose(a, b) for a, b in
             zip(jax.tree.leaves(init.params), trained, strict=True)]  # fmt: skip
    assert all(moved)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(first_run[0].params))


def test_four_devices_match_one_device(tmp_path, learner, first_run):
    out = tmp_path / "four.npz"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out)],
        cwd=REPO, env=forced_devices_env(4), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    four = np.load(out)
    assert int(four["devices"]) == 4
    state, metrics, traj = first_run
    # same global batch: same envs, same steps per update
    assert four["actions"].shape == traj.action.shape
    np.testing.assert_array_equal(four["obs"][0, 0], np.asarray(traj.obs[0, 0]))
    np.testing.assert_array_equal(four["actions"][0], np.asarray(traj.action[0]))
    leaves = jax.tree.leaves(jax.device_get(state.params))
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(four[f"param_{i}"], leaf, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(four["total_loss"], metrics.loss.total_loss, rtol=1e-3, atol=1e-5)
    # evaluation sharded over the 4 devices: every env scored once, within the time limit
    lengths = four["eval_lengths"]
    assert lengths.shape == (8,) and ((lengths >= 1) & (lengths <= four["time_limit"])).all()


def test_num_envs_must_split_over_devices():
    from marlvault.errors import ConfigError
    from marlvault.online import anakin

    mesh = anakin.make_mesh()
    with pytest.raises(ConfigError, match="arch.num_envs"):
        anakin.local_count(3, jax.sharding.Mesh(np.array(mesh.devices.tolist() * 2), ("env",)),
                           "arch.num_envs")  # fmt: skip


@pytest.mark.parametrize("recurrent", [False, True])
def test_learner_init_batches_no_lapack_call(recurrent):
    """The learner's init makes one orthogonal initialisation per network (no vmapped QR, which
    can hang XLA's CPU pool when each device runs its own program; tests/lapack_calls.py)."""
    cfg = tiny_rec_config() if recurrent else tiny_config()
    learner = (rec_ippo if recurrent else ippo).make_train(cfg)
    calls = lapack_calls(learner.init.lower(jax.random.PRNGKey(0)).as_text())
    assert calls, "no LAPACK call found: the pattern no longer matches the lowering"
    assert not batched(calls), f"batched LAPACK calls in the learner's init: {batched(calls)}"


def test_lapack_check_sees_a_vmapped_orthogonal_init():
    """The check above would catch the hang's cause: a vmapped orthogonal init lowers to one
    batched QR."""
    init = jax.nn.initializers.orthogonal()
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    text = jax.jit(jax.vmap(lambda k: init(k, (8, 8)))).lower(keys).as_text()
    assert batched(lapack_calls(text))
