"""VecEnv: truncation, auto-reset contract, naive == fast, metrics, batch slicing.

Compilation dominates on CPU, so the RWARE rollouts are compiled once per module (one per
auto-reset scheme) and shared by several tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlvault.envs import VecEnv, make_env
from marlvault.errors import ConfigError

T_LIMIT, B, STEPS = 6, 6, 20
OFFSETS = [0, 1, 2, 3, 5, 5]  # hand-made start: env b has already taken OFFSETS[b] steps


def random_legal(key, legal):
    return jax.random.categorical(key, jnp.where(legal, 0.0, -jnp.inf)).astype(jnp.int32)


def stagger(vstate, offsets):
    """Sets per-env step counts so that truncations fall on different steps (partial resets)."""
    env_state = vstate.env_state.replace(step_count=jnp.asarray(offsets, jnp.int32))
    return vstate._replace(env_state=env_state, episode_length=jnp.asarray(offsets, jnp.int32))


def make_rollout(venv, num_steps):
    """Jitted scan with random legal actions; emits (actions, keys before the step, VecStep)."""

    def body(carry, k):
        vs, lg = carry
        actions = random_legal(k, lg)
        keys_before = vs.key
        vs, out = venv.step(vs, actions)
        return (vs, out.timestep.legal), (actions, keys_before, out)

    @jax.jit
    def run(vstate, legal, key):
        return jax.lax.scan(body, (vstate, legal), jax.random.split(key, num_steps))[1]

    return run


@pytest.fixture(scope="module")
def rware_runs():
    env = make_env("rware", "tiny-2ag", time_limit=T_LIMIT)
    vstate, ts = jax.jit(VecEnv(env, num_envs=B).reset)(jax.random.PRNGKey(7))  # same for both
    vstate = stagger(vstate, OFFSETS)
    runs = {}
    for scheme in ("naive", "batch", "fast"):
        venv = VecEnv(env, num_envs=B, autoreset=scheme)
        runs[scheme] = make_rollout(venv, STEPS)(vstate, ts.legal, jax.random.PRNGKey(8))
    return env, runs


def _leaves(tree):
    out = []
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return out


def test_all_autoreset_schemes_identical(rware_runs):
    _, runs = rware_runs
    done = np.asarray(runs["fast"][2].metrics.done)
    num_done = done.sum(axis=1)
    # "fast" resets one env in a loop when 1 (= B // 8 rounded up to 1) is done, batch otherwise:
    assert (num_done == 1).sum() >= 3 and ((num_done > 1) & (num_done < B)).sum() >= 2
    for scheme in ("batch", "fast"):
        assert jax.tree.structure(runs["naive"]) == jax.tree.structure(runs[scheme])
        for a, b in zip(_leaves(runs["naive"]), _leaves(runs[scheme]), strict=True):
            np.testing.assert_array_equal(a, b)


def test_truncation_and_step_count(rware_runs):
    _, runs = rware_runs
    out = runs["fast"][2]
    ts, m = out.timestep, out.metrics
    term = np.asarray(ts.terminated)
    trunc = np.asarray(ts.truncated)
    assert not (term & trunc).any()
    # Replay the expected step counter per env from the staggered start.
    count = np.array(OFFSETS)
    for t in range(STEPS):
        count = count + 1
        hit_limit = count >= T_LIMIT
        np.testing.assert_array_equal(trunc[t], hit_limit & ~term[t])
        np.testing.assert_array_equal(np.asarray(m.done[t]), hit_limit | term[t])
        ended = hit_limit | term[t]
        np.testing.assert_array_equal(np.asarray(m.episode_length[t])[ended], count[ended])
        count = np.where(ended, 0, count)
        np.testing.assert_array_equal(np.asarray(ts.step_count[t]), count)
    assert trunc.sum() >= 2 * B


def test_autoreset_timestep_is_a_fresh_reset(rware_runs):
    env, runs = rware_runs
    _, keys_before, out = runs["fast"]
    done = np.asarray(out.metrics.done)
    ts_idx, env_idx = np.nonzero(done)
    keys = keys_before[ts_idx, env_idx]
    split = jax.vmap(jax.random.split)(keys)  # [D, 2]: (next key, reset key)
    _, fresh = jax.jit(jax.vmap(env.reset))(split[:, 1])
    np.testing.assert_array_equal(out.timestep.obs[ts_idx, env_idx], fresh.obs)
    np.testing.assert_array_equal(out.timestep.legal[ts_idx, env_idx], fresh.legal)
    np.testing.assert_array_equal(out.timestep.state[ts_idx, env_idx], fresh.state)
    # final_obs is the true last observation where done, and equals obs elsewhere.
    assert not np.array_equal(out.final_obs[ts_idx, env_idx], fresh.obs)
    np.testing.assert_array_equal(out.final_obs[~done], out.timestep.obs[~done])
    # final_state likewise: the state reached by the step (RWARE: the joint observation)
    n, o = out.final_obs.shape[-2:]
    np.testing.assert_array_equal(out.final_state, out.final_obs.reshape(*done.shape, n * o))
    np.testing.assert_array_equal(out.final_state[~done], out.timestep.state[~done])
    # A reset advances that env's key by one split; other keys do not move.
    nxt = keys_before[1:]
    np.testing.assert_array_equal(_leaves(nxt[done[:-1]])[0], _leaves(
        jax.vmap(lambda k: jax.random.split(k)[0])(keys_before[:-1][done[:-1]]))[0])
    np.testing.assert_array_equal(_leaves(nxt[~done[:-1]])[0], _leaves(
        keys_before[:-1][~done[:-1]])[0])


def test_metrics_return_is_sum_of_mean_agent_reward():
    venv = VecEnv(make_env("lbf", "10x10-3p-3f", time_limit=25), num_envs=8)
    vstate, ts = jax.jit(venv.reset)(jax.random.PRNGKey(1))
    _, _, out = make_rollout(venv, 60)(vstate, ts.legal, jax.random.PRNGKey(2))
    m = jax.tree.map(np.asarray, out.metrics)
    reward = np.asarray(out.timestep.reward)  # [T, B, N]
    assert reward.sum() > 0  # random agents eat some food in 8 x 60 steps
    checked = 0
    for b in range(8):
        running, length = 0.0, 0
        for t in range(60):
            running += reward[t, b].mean()
            length += 1
            if m.done[t, b]:
                assert m.episode_return[t, b] == pytest.approx(running, abs=1e-5)
                assert m.episode_length[t, b] == length
                running, length, checked = 0.0, 0, checked + 1
    assert checked >= 16
    assert not m.win.any()


def test_step_on_slices_equals_step_on_batch():
    """What shard_map relies on: each slice of envs steps as it does in the full batch."""
    env = make_env("lbf", "8x8-2p-2f-coop", time_limit=3)
    venv4, venv2 = VecEnv(env, num_envs=4), VecEnv(env, num_envs=2)

    @jax.jit
    def full_and_sliced(key):
        vstate, ts = venv4.reset(key)
        vstate = stagger(vstate, [2, 0, 0, 1])  # env 0 truncates now, the second slice does not
        actions = random_legal(jax.random.PRNGKey(1), ts.legal)
        _, full = venv4.step(vstate, actions)
        halves = [
            venv2.step(jax.tree.map(lambda x, s=s: x[s], vstate), actions[s])[1]
            for s in (slice(0, 2), slice(2, 4))
        ]
        return full, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *halves)

    full, joined = full_and_sliced(jax.random.PRNGKey(0))
    assert full.metrics.done.tolist() == [True, False, False, False]
    for a, b in zip(_leaves(full), _leaves(joined), strict=True):
        np.testing.assert_array_equal(a, b)


def test_vec_env_rejects_bad_config():
    env = make_env("rware", "tiny-2ag")
    with pytest.raises(ConfigError, match="num_envs"):
        VecEnv(env, 0)
    with pytest.raises(ConfigError, match="autoreset"):
        VecEnv(env, 2, autoreset="lazy")
    with pytest.raises(ConfigError, match="loop_max"):
        VecEnv(env, 2, loop_max=-1)
    assert VecEnv(env, 64).loop_max == 8 and VecEnv(env, 4).loop_max == 1
