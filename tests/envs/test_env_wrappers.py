"""add_agent_ids, AgentIDWrapper and the episode-statistics update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.envs import AgentIDWrapper, add_agent_ids, make_env
from marlvault.envs.wrappers import EpisodeStats, update_episode_stats


def test_add_agent_ids_values():
    obs = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)  # [B=2, N=3, O=4]
    out = add_agent_ids(obs)
    assert out.shape == (2, 3, 7) and out.dtype == jnp.float32
    np.testing.assert_array_equal(out[..., :4], obs)
    for b in range(2):
        np.testing.assert_array_equal(out[b, :, 4:], np.eye(3))
    # leading [T, B] axes and jit
    obs_tb = jnp.ones((5, 2, 4, 3), jnp.float32)
    out_tb = jax.jit(add_agent_ids)(obs_tb)
    assert out_tb.shape == (5, 2, 4, 7)
    np.testing.assert_array_equal(out_tb[4, 1, 2, 3:], [0, 0, 1, 0])


def test_agent_id_wrapper():
    env = make_env("lbf", "8x8-2p-2f-coop")
    wrapped = AgentIDWrapper(env)
    assert wrapped.spec.obs_dim == env.spec.obs_dim + 2
    assert wrapped.spec.state_dim == env.spec.state_dim
    _, ts = jax.eval_shape(wrapped.reset, jax.random.PRNGKey(0))
    assert ts.obs.shape == (2, env.spec.obs_dim + 2)
    raw, ts = jax.jit(lambda k: (env.reset(k)[1], wrapped.reset(k)[1]))(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(ts.obs, add_agent_ids(raw.obs))
    np.testing.assert_array_equal(ts.state, raw.state)  # state stays raw


def test_update_episode_stats_matches_manual_sums():
    rng = np.random.default_rng(0)
    t_len, b, n = 30, 4, 3
    reward = rng.normal(size=(t_len, b, n)).astype(np.float32)
    done = rng.random((t_len, b)) < 0.2
    stats = EpisodeStats(jnp.zeros(b, jnp.float32), jnp.zeros(b, jnp.int32))
    running, length = np.zeros(b), np.zeros(b, int)
    seen = 0
    for t in range(t_len):
        stats, m = update_episode_stats(stats, jnp.asarray(reward[t]), jnp.asarray(done[t]))
        running += reward[t].mean(-1)
        length += 1
        np.testing.assert_array_equal(np.asarray(m.done), done[t])
        np.testing.assert_allclose(np.asarray(m.episode_return)[done[t]], running[done[t]], 1e-5)
        np.testing.assert_array_equal(np.asarray(m.episode_length)[done[t]], length[done[t]])
        assert not np.asarray(m.win).any()
        seen += done[t].sum()
        running[done[t]], length[done[t]] = 0.0, 0
        np.testing.assert_allclose(np.asarray(stats.episode_return), running, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(stats.episode_length), length)
    assert seen >= 10
    win = jnp.array([True, True, False, False])
    _, m = update_episode_stats(stats, jnp.zeros((b, n)), jnp.array([True, False, True, False]), win)
    assert m.win.tolist() == [True, False, False, False]  # win only where the episode ended
