"""jumanji adapters: termination vs truncation and legal masks on hand-made states."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jumanji.environments.routing.robot_warehouse.utils_spawn import place_entities_on_grid

from marlvault.envs import make_env
from marlvault.envs.jumanji_envs import INNER_TIME_LIMIT

LBF_NOOP, LBF_UP, LBF_DOWN, LBF_LEFT, LBF_RIGHT, LBF_LOAD = range(6)
RW_NOOP, RW_FORWARD, RW_TOGGLE_LOAD = 0, 1, 4


@pytest.fixture(scope="module")
def lbf():
    """LBF 8x8 with time limit 1 and jitted reset/step (compiled once for the module)."""
    env = make_env("lbf", "8x8-2p-2f-coop", time_limit=1)
    return env, jax.jit(env.reset), jax.jit(env.step)


def lbf_state(reset, agent_pos, agent_level, food_pos, food_level, food_eaten):
    """A hand-made LBF state from a reset one (positions [k, 2] as (row, col))."""
    state, _ = reset(jax.random.PRNGKey(0))
    agents = state.agents.replace(
        position=jnp.asarray(agent_pos, jnp.int32), level=jnp.asarray(agent_level, jnp.int32)
    )
    food = state.food_items.replace(
        position=jnp.asarray(food_pos, jnp.int32),
        level=jnp.asarray(food_level, jnp.int32),
        eaten=jnp.asarray(food_eaten, bool),
    )
    return state.replace(agents=agents, food_items=food)


def test_jumanji_time_limit_is_out_of_the_way():
    env = make_env("rware", "tiny-2ag")
    assert env.env.time_limit == INNER_TIME_LIMIT > 10 * env.spec.time_limit
    assert make_env("lbf", "15x15-4p-5f").env.time_limit == INNER_TIME_LIMIT


def test_lbf_termination_beats_truncation(lbf):
    """Eating the last food is a termination, even on the step that reaches the time limit."""
    env, reset, step = lbf
    # Food 0 already eaten; agent 0 (level 2) stands right of food 1 (level 1) and loads it.
    state = lbf_state(reset, [[3, 4], [6, 6]], [2, 1], [[1, 1], [3, 3]], [1, 1], [True, False])
    _, ts = step(state, jnp.array([LBF_LOAD, LBF_NOOP], jnp.int32))
    assert bool(ts.terminated) and not bool(ts.truncated)
    # jumanji's normalised reward: 2 * 1 / (2 * total food level 2) = 0.5 for agent 0, 0 for
    # agent 1; the team reward (their sum) is repeated per agent.
    np.testing.assert_allclose(np.asarray(ts.reward), [0.5, 0.5])
    # Same state without loading: the time limit (1 step) truncates instead.
    _, ts = step(state, jnp.array([LBF_NOOP, LBF_NOOP], jnp.int32))
    assert bool(ts.truncated) and not bool(ts.terminated)
    assert float(ts.reward.sum()) == 0.0 and int(ts.step_count) == 1


def test_lbf_legal_mask_on_edges(lbf):
    env, reset, step = lbf
    # Agent 0 in the top-left corner; agent 1 on the bottom edge, directly above food 1.
    state = lbf_state(reset, [[0, 0], [7, 4]], [1, 1], [[3, 3], [6, 4]], [2, 2], [False, False])
    _, ts = step(state, jnp.array([LBF_NOOP, LBF_NOOP], jnp.int32))
    legal = np.asarray(ts.legal)
    np.testing.assert_array_equal(legal[0], [True, False, True, False, True, False])
    # agent 1: up is food, down is the wall, load is legal (food adjacent)
    np.testing.assert_array_equal(legal[1], [True, False, False, True, True, True])
    # Illegal actions change nothing the agents observe; a legal move does.
    _, noop = step(state, jnp.array([LBF_NOOP, LBF_NOOP], jnp.int32))
    _, illegal = step(state, jnp.array([LBF_UP, LBF_DOWN], jnp.int32))
    np.testing.assert_array_equal(np.asarray(illegal.obs), np.asarray(noop.obs))
    _, moved = step(state, jnp.array([LBF_RIGHT, LBF_NOOP], jnp.int32))
    assert not np.array_equal(np.asarray(moved.obs), np.asarray(noop.obs))


def test_lbf_illegal_actions_are_noops_on_random_states(lbf):
    """Property: for every agent and every action its mask forbids, acting = doing nothing."""
    env, reset, _ = lbf
    n, a = env.spec.num_agents, env.spec.action_dim

    def check(key):
        state, ts = env.reset(key)
        _, base = env.step(state, jnp.zeros((n,), jnp.int32))
        acts = jnp.zeros((n * a, n), jnp.int32)
        acts = acts.at[jnp.arange(n * a), jnp.arange(n * a) // a].set(jnp.arange(n * a) % a)
        _, outs = jax.vmap(env.step, in_axes=(None, 0))(state, acts)
        same = jnp.all(outs.obs == base.obs, axis=(1, 2)).reshape(n, a)
        return ts.legal, same

    legal, same = jax.jit(jax.vmap(check))(jax.random.split(jax.random.PRNGKey(4), 16))
    legal, same = np.asarray(legal), np.asarray(same)
    assert (~legal).sum() >= 16  # the states do contain illegal actions
    assert same[~legal].all()
    assert not same[:, :, 1:5][legal[:, :, 1:5]].all()  # and legal moves do something


def test_rware_forward_into_shelf_while_carrying_is_illegal():
    env = make_env("rware", "tiny-2ag")
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state, ts0 = reset(jax.random.PRNGKey(0))
    assert np.asarray(ts0.legal).all()  # nobody carries a shelf at the start
    grid = np.asarray(state.grid)
    assert grid[0, 3, 1] > 0 and grid[0, 2, 1] > 0  # channel 0: shelves at (3, 1) and (2, 1)
    # Hand-made: agent 0 under the shelf at (3, 1), facing up (towards the shelf at (2, 1)).
    pos = state.agents.position
    agents = state.agents._replace(
        position=pos._replace(x=jnp.array([3, 0], jnp.int32), y=jnp.array([1, 9], jnp.int32)),
        direction=jnp.array([0, 2], jnp.int32),
    )
    grid = place_entities_on_grid(jnp.zeros_like(state.grid), agents, state.shelves)
    state = state.replace(agents=agents, grid=grid)
    # Agent 0 picks the shelf up: now moving forward would drive a shelf into a shelf.
    loaded, ts = step(state, jnp.array([RW_TOGGLE_LOAD, RW_NOOP], jnp.int32))
    assert int(loaded.agents.is_carrying[0]) == 1
    legal = np.asarray(ts.legal)
    np.testing.assert_array_equal(legal[0], [True, False, True, True, True])
    assert legal[1].all()
    # The illegal forward is a no-op.
    blocked, ts_fwd = step(loaded, jnp.array([RW_FORWARD, RW_NOOP], jnp.int32))
    assert (int(blocked.agents.position.x[0]), int(blocked.agents.position.y[0])) == (3, 1)
    _, ts_noop = step(loaded, jnp.array([RW_NOOP, RW_NOOP], jnp.int32))
    np.testing.assert_array_equal(np.asarray(ts_fwd.obs), np.asarray(ts_noop.obs))
    assert not bool(ts_fwd.terminated)
