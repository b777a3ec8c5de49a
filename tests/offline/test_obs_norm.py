"""TD3+BC's observation normalisation (``iddpg-bc``, ``system.normalise_obs``): the dataset's
statistics against numpy's over the valid steps (both modes, padding left out), normalised inputs
reaching actor and critics, statistics that travel in the checkpoint, and ``normalise_obs=false``
as before.

Sizes are tiny; the learner tests share one algorithm and one jitted update.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlvault.checkpoint import load_policy, save_checkpoint
from marlvault.errors import DatasetError
from marlvault.offline import dataset as ds
from marlvault.offline import iddpg_bc
from marlvault.offline.train import load_config, open_dataset, run_config_class
from marlvault.offline.windows import (
    ObsStats,
    SequenceBatch,
    merge_moments,
    normalise_obs,
    obs_moments,
    stats_from_moments,
)
from marlvault.vault.vault import Vault

from .helpers import B, N, O, T, handmade_tree

LENGTHS = [10, 7]  # row 1: steps 7-9 are padding
A, L, K = 2, 3, 4
TINY = {"hidden": (8,), "rnn_size": 8, "critic_hidden": (16,), "seq_len": L, "batch_size": K,
        "num_updates": 3}


def _obs(seed: int = 0) -> np.ndarray:
    """[B, T, N, O] observations with a different scale per agent and feature; the padded steps
    hold huge values, so counting them would show."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, N * O + 1, dtype=np.float32).reshape(N, O)
    obs = (rng.normal(size=(B, T, N, O)) * scale + 10.0 * scale).astype(np.float32)
    obs[1, LENGTHS[1]:] = 1e4
    return obs


def _continuous_tree() -> dict:
    tree = handmade_tree(with_state=False)
    tree["actions"] = np.zeros((B, T, N, A), np.float32)
    del tree["infos"]["legals"]
    return tree


@pytest.fixture(scope="module")
def padded_path(tmp_path_factory) -> str:
    tree = _continuous_tree()
    tree["observations"] = _obs()
    path = str(tmp_path_factory.mktemp("norm") / "padded")
    with Vault.create(path, tree, metadata={"marlvault": {"row_lengths": LENGTHS}}, chunks=4) as v:
        v.append(tree)
    return path


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_statistics_are_numpys_over_the_valid_steps(padded_path, mode):
    config = ds.DatasetConfig(seq_len=2, mode=mode, steps_per_chunk=3,  # stream: four blocks
                              continuous_ok=True)
    stats = ds.OfflineDataset(padded_path, config).obs_stats()
    obs = _obs()
    valid = np.concatenate([obs[0], obs[1, :LENGTHS[1]]]).astype(np.float64)  # [V, N, O]
    assert stats.mean.shape == stats.std.shape == (N, O) and stats.mean.dtype == np.float32
    np.testing.assert_allclose(stats.mean, valid.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, valid.std(axis=0), rtol=1e-5)


def test_moments_merge_in_any_split_and_all_padding_is_refused():
    obs, present = _obs(), (np.arange(T) < np.array(LENGTHS)[:, None]).astype(np.float32)
    whole = obs_moments(obs, present)
    parts = [obs_moments(obs[:, a:a + 3], present[:, a:a + 3]) for a in range(0, T, 3)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merge_moments(merged, part)
    assert merged.count == whole.count == sum(LENGTHS)
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-9)
    empty = obs_moments(obs, np.zeros_like(present))
    assert empty.count == 0
    with pytest.raises(DatasetError, match="expected at least one valid step"):
        stats_from_moments(empty, "<test>")


def test_normalise_obs_by_hand_leaves_agent_ids():
    stats = ObsStats(np.full((N, O), 2.0, np.float32), np.full((N, O), 0.5, np.float32))
    obs = np.concatenate([np.full((5, N, O), 3.0, np.float32),
                          np.broadcast_to(np.eye(N, dtype=np.float32), (5, N, N))], -1)
    for xp in (np, jnp):
        got = np.asarray(normalise_obs(xp.asarray(obs), stats, xp))
        np.testing.assert_allclose(got[..., :O], (3.0 - 2.0) / (0.5 + 1e-3), rtol=1e-6)
        np.testing.assert_array_equal(got[..., O:], obs[..., O:])


# --- the learner ---------------------------------------------------------------------------------
def test_the_trainer_opens_the_vault_with_statistics_for_iddpg_bc_only(padded_path):
    with_stats = open_dataset("iddpg-bc", load_config("iddpg-bc", [f"vault={padded_path}"]))
    assert with_stats.spec.obs_stats is not None
    np.testing.assert_array_equal(with_stats.spec.obs_stats.mean, with_stats.obs_stats().mean)
    off = load_config("iddpg-bc", [f"vault={padded_path}", "system.normalise_obs=false"])
    assert off.system.normalise_obs is False
    assert open_dataset("iddpg-bc", off).spec.obs_stats is None
    cql = load_config("iddpg-cql", [f"vault={padded_path}"])
    assert open_dataset("iddpg-cql", cql).spec.obs_stats is None


def _spec(stats: ObsStats | None) -> ds.DataSpec:
    spec = ds.spec_from_tree(_continuous_tree(), "<test>", T, True, continuous_ok=True)
    return dataclasses.replace(spec, obs_stats=stats)


STATS = ObsStats(np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]], np.float32),
                 np.array([[2.0, 0.1, 1.0], [3.0, 0.0, 0.5]], np.float32))


def _batch(shift: float = 0.0) -> SequenceBatch:
    """K windows of L steps, agent ids appended; ``shift`` is added to the raw features only."""
    rng = np.random.default_rng(1)
    raw = STATS.mean + STATS.std * rng.normal(size=(L + 1, K, N, O)) + shift
    ids = np.broadcast_to(np.eye(N), (L + 1, K, N, N))
    mask = np.ones((L, K), np.float32)
    return SequenceBatch(
        obs=jnp.asarray(np.concatenate([raw, ids], -1), jnp.float32),
        legal=jnp.ones((L + 1, K, N, A)), state=jnp.zeros((L + 1, K, 0)),
        actions=jnp.asarray(np.tanh(rng.normal(size=(L, K, N, A))), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=(L, K, N)), jnp.float32),
        terminal=jnp.zeros((L, K)), truncated=jnp.zeros((L, K)), mask=jnp.asarray(mask),
        target_mask=jnp.asarray(mask))


@pytest.fixture(scope="module")
def learner():
    """The normalising IDDPG+BC, its jitted update and initial state (policy_delay 1: the actor
    moves in the first update)."""
    config = iddpg_bc.Config(**TINY, policy_delay=1)
    algo = iddpg_bc.make_algorithm(config, _spec(STATS))
    return config, algo, jax.jit(algo.update), algo.init(jax.random.key(0))


def _close(a, b) -> None:
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6), a, b)


def test_state_holds_the_statistics_outside_the_optimisers(learner):
    config, algo, update, state = learner
    _close(tuple(state.obs_norm), tuple(STATS))
    assert iddpg_bc.data_needs(config).obs_stats
    new, _ = update(state, _batch())
    _close(tuple(new.obs_norm), tuple(STATS))  # never updated
    assert jax.tree.structure(new.actor_opt) == jax.tree.structure(state.actor_opt)
    params = algo.params(new)
    assert set(params) == {"actor", "obs_norm"} and set(params["obs_norm"]) == {"mean", "std"}


def test_actor_and_critics_see_normalised_observations(learner):
    _, _, update, state = learner
    base, m_base = update(state, _batch())
    # observations and statistics shifted together: the normalised inputs, so the update, agree
    moved = state._replace(obs_norm=ObsStats(state.obs_norm.mean + 7.0, state.obs_norm.std))
    shifted, m_shifted = update(moved, _batch(7.0))
    _close((base.actor, base.critic), (shifted.actor, shifted.critic))
    _close(m_base, m_shifted)
    # shifted observations alone change both the critic's and the actor's step
    _, m_raw = update(state, _batch(7.0))
    for key in ("critic_loss", "actor_loss"):
        assert abs(float(m_raw[key]) - float(m_base[key])) > 1e-4, key


def test_normalise_false_is_the_raw_learner_on_normalised_observations(learner):
    config, _, update, state = learner
    plain_config = dataclasses.replace(config, normalise_obs=False)
    assert not iddpg_bc.data_needs(plain_config).obs_stats
    plain = iddpg_bc.make_algorithm(plain_config, _spec(None))  # no statistics needed
    start = plain.init(jax.random.key(0))
    assert start.obs_norm is None and plain.params(start) is start.actor
    batch = _batch()
    by_hand = batch._replace(obs=normalise_obs(batch.obs, STATS))
    got, m_got = jax.jit(plain.update)(start, by_hand)
    want, m_want = update(state, batch)
    _close((got.actor, got.critic, m_got), (want.actor, want.critic, m_want))


def test_init_without_statistics_says_the_fix():
    algo = iddpg_bc.make_algorithm(iddpg_bc.Config(**TINY), _spec(None))
    with pytest.raises(DatasetError, match="normalise_obs=false"):
        algo.init(jax.random.key(0))


def test_a_restored_checkpoint_acts_with_its_statistics(learner, tmp_path):
    config, algo, update, state = learner
    trained, _ = update(state, _batch())
    run = run_config_class("iddpg-bc")(system=config)
    folder = save_checkpoint(tmp_path, "best", algo.params(trained), run, step=1, return_mean=0.0)
    restored_config, params = load_policy(folder)
    # another process: the bundle is built without the dataset's statistics
    fresh = iddpg_bc.make_algorithm(restored_config.system, _spec(None))
    obs = _batch(3.0).obs[0, :2]  # [E=2, N, O + N]
    hidden, reset = fresh.init_hidden(2), jnp.ones(2, bool)
    _, got = fresh.act(params, hidden, obs, None, reset)
    _, want = algo.act(algo.params(trained), hidden, obs, None, reset)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # by hand: the raw-observation policy on normalised observations
    raw = iddpg_bc.make_algorithm(dataclasses.replace(config, normalise_obs=False), _spec(None))
    _, by_hand = raw.act(params["actor"], hidden, normalise_obs(obs, STATS), None, reset)
    np.testing.assert_allclose(got, by_hand, rtol=1e-6)
    _, unnormalised = raw.act(params["actor"], hidden, obs, None, reset)
    assert not np.allclose(got, unnormalised, atol=1e-3)
