"""Windows, masks and the bootstrap rule against hand-made data with known episodes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from marlvault.errors import ConfigError, DatasetError
from marlvault.offline import dataset as ds

from .helpers import A, B, N, O, T, handmade_tree


def _spec(tree, ids=False):
    return ds.spec_from_tree(tree, "<test>", T, add_agent_ids=ids)


def _windows(tree, seq_len, stride=0, ids=False):
    """All windows of the in-memory path, keyed by (row, t0)."""
    spec = _spec(tree, ids)
    config = ds.DatasetConfig(seq_len=seq_len, stride=stride, add_agent_ids=ids)
    data = ds.make_device_data(ds.steps_from_tree(tree, spec), config)
    steps = ds.StepArrays(*(None if x is None else np.asarray(x) for x in data.steps))
    rows, t0 = np.asarray(data.rows), np.asarray(data.t0)
    batch = ds.gather_windows(steps, rows, t0, seq_len, spec, np)
    return {(int(r), int(t)): ds.SequenceBatch(*(x[k] for x in batch))
            for k, (r, t) in enumerate(zip(rows, t0, strict=True))}


def test_window_starts_follow_episodes():
    wins = _windows(handmade_tree(), seq_len=3)
    assert sorted(wins) == [(0, 0), (0, 3), (0, 4), (0, 7), (0, 8),
                            (1, 0), (1, 3), (1, 6), (1, 9)]


def test_masks_stop_at_episode_end_and_row_end():
    wins = _windows(handmade_tree(), seq_len=3)
    w = wins[(0, 3)]  # the terminal step, then the next episode: masked
    np.testing.assert_array_equal(w.mask, [1, 0, 0])
    np.testing.assert_array_equal(w.terminal, [1, 0, 0])
    np.testing.assert_array_equal(w.target_mask, [1, 0, 0])
    w = wins[(0, 4)]  # inside one episode: all next observations known
    np.testing.assert_array_equal(w.mask, [1, 1, 1])
    np.testing.assert_array_equal(w.target_mask, [1, 1, 1])
    np.testing.assert_allclose(w.obs[:, 0, 0], [4, 5, 6, 7])
    w = wins[(0, 8)]  # unfinished episode at the row end: step 9's next is unknown
    np.testing.assert_array_equal(w.mask, [1, 1, 0])
    np.testing.assert_array_equal(w.target_mask, [1, 0, 0])
    w = wins[(1, 3)]
    np.testing.assert_array_equal(w.mask, [1, 1, 1])
    np.testing.assert_array_equal(w.terminal, [0, 0, 1])
    np.testing.assert_allclose(w.rewards[:, 0], [103, 104, 105])


def test_bootstrap_terminal_vs_truncation():
    # Transitions: the terminal keeps its target with discount 0; the truncation without a
    # recorded next observation is masked; with one it is kept and bootstraps from it.
    wins = _windows(handmade_tree(), seq_len=1, stride=1)
    assert len(wins) == B * T
    term, trunc = wins[(0, 3)], wins[(0, 7)]
    assert term.terminal[0] == 1 and term.target_mask[0] == 1
    assert trunc.truncated[0] == 1 and trunc.terminal[0] == 0 and trunc.target_mask[0] == 0
    assert wins[(0, 9)].target_mask[0] == 0 and wins[(0, 6)].target_mask[0] == 1
    wins = _windows(handmade_tree(with_next_obs=True), seq_len=1, stride=1)
    trunc = wins[(0, 7)]
    assert trunc.target_mask[0] == 1
    np.testing.assert_allclose(trunc.obs[1, :, 0], 999.0)  # not the next episode's first obs
    assert wins[(0, 9)].target_mask[0] == 0


def test_transitions_and_agent_ids():
    wins = _windows(handmade_tree(), seq_len=1, stride=1, ids=True)
    w = wins[(1, 2)]
    assert w.obs.shape == (2, N, O + N)
    np.testing.assert_array_equal(w.obs[0, :, O:], np.eye(N))
    # a transition is a window of one step: position 1 holds its next observation and state
    np.testing.assert_allclose(w.obs[1, :, 0], [103, 103.1])
    np.testing.assert_allclose(w.state[1], 103.0)
    assert w.legal.shape == (2, N, A) and w.actions.shape == (1, N)


def test_streaming_cuts_the_same_windows_as_memory():
    tree = handmade_tree(with_next_obs=True)
    spec = _spec(tree)
    ref = _windows(tree, seq_len=3)
    for chunk in (1, 2, 3, 4, 10):
        blocks = (
            {k: (v[:, s:s + chunk] if not isinstance(v, dict)
                 else {kk: vv[:, s:s + chunk] for kk, vv in v.items()})
             for k, v in tree.items()}
            for s in range(0, T, chunk)
        )
        got = list(ds.stream_windows(blocks, spec, ds.DatasetConfig(seq_len=3)))
        batch = ds.SequenceBatch(*(np.concatenate(x) for x in zip(*got, strict=True)))
        keys = [(int(c // 100), int(c % 100)) for c in np.round(batch.obs[:, 0, 0, 0])]
        assert sorted(keys) == sorted(ref), chunk
        for k, key in enumerate(keys):
            for name, want in ref[key]._asdict().items():
                np.testing.assert_allclose(getattr(batch, name)[k], want, err_msg=name)


def test_shuffle_buffer_bounded_and_covers_everything():
    tree = handmade_tree()
    spec = _spec(tree)
    config = ds.DatasetConfig(seq_len=2, stride=1)
    blocks = lambda: iter([tree])  # noqa: E731
    windows = ds._endless_windows(blocks, spec, config, "<test>")
    buffer = ds.ShuffleBuffer(windows, capacity=7, batch_size=4, rng=np.random.default_rng(0))
    seen = set()
    for _ in range(40):
        batch = buffer.batch()  # time-major
        assert batch.obs.shape == (3, 4, N, O)
        seen.update(np.round(batch.obs[0, :, 0, 0]).astype(int).tolist())
    assert buffer.buffer.obs.shape[1] == 7  # bounded
    assert seen == {100 * b + t for b in range(B) for t in range(T)}


def test_shuffle_buffer_groups_and_agent_ids():
    """A group is consecutive batches stacked; ids appended by the buffer equal ids gathered with
    the windows."""
    tree = handmade_tree()
    spec = _spec(tree, ids=True)
    config = ds.DatasetConfig(seq_len=2, stride=1)

    def buffer(agent_ids: bool, seed: int = 3) -> ds.ShuffleBuffer:
        windows = ds._endless_windows(lambda: iter([tree]), spec, config, "<test>",
                                      agent_ids=not agent_ids)
        ids = ds.one_hot_ids(N) if agent_ids else None
        return ds.ShuffleBuffer(windows, 9, 4, np.random.default_rng(seed), ids)

    with_ids, gathered = buffer(True), buffer(False)
    for _ in range(3):
        group = with_ids.group(5)
        singles = [gathered.batch() for _ in range(5)]
        for name, got in group._asdict().items():
            want = np.stack([getattr(b, name) for b in singles])
            np.testing.assert_array_equal(got, want, err_msg=name)
    assert group.obs.shape == (5, 3, 4, N, O + N)
    np.testing.assert_array_equal(group.obs[..., O:], np.broadcast_to(np.eye(N), (5, 3, 4, N, N)))


def test_missing_legals_and_state():
    tree = handmade_tree(with_state=False)
    del tree["infos"]["legals"]
    spec = _spec(tree)
    assert not spec.has_legals and spec.state_dim == 0 and spec.action_dim == 3
    steps = ds.steps_from_tree(tree, spec)
    assert steps.legal.shape == (B, T, N, 3) and steps.legal.min() == 1
    with pytest.raises(DatasetError, match="infos.state"):
        ds.spec_from_tree(tree, "<test>", T, add_agent_ids=True, need_state=True)
    with pytest.raises(DatasetError, match="observations"):
        ds.spec_from_tree({"actions": tree["actions"]}, "<test>", T, add_agent_ids=True)
    with pytest.raises(ConfigError, match="seq_len"):
        ds.DatasetConfig(seq_len=0)


def test_truncation_needs_every_next_input():
    # next_obs is recorded but not next_state: a state-based learner (QMIX) cannot bootstrap.
    tree = handmade_tree(with_next_obs=True)
    spec = ds.spec_from_tree(tree, "<test>", T, add_agent_ids=False, need_state=True)
    assert spec.has_next_obs and not spec.bootstrap_truncations
    steps = ds.steps_from_tree(tree, spec)
    batch = ds.gather_windows(ds.pad_steps(steps, 2), np.array([0]), np.array([7]), 1, spec, np)
    assert batch.truncated[0, 0] == 1 and batch.target_mask[0, 0] == 0
    np.testing.assert_array_equal(batch.legal[0, 1], 1.0)  # next mask unknown: all legal
    tree["infos"]["next_state"] = np.zeros_like(tree["infos"]["state"])
    spec = ds.spec_from_tree(tree, "<test>", T, add_agent_ids=False, need_state=True)
    assert spec.bootstrap_truncations


@pytest.mark.parametrize("next_obs", [False, True])
def test_windows_without_the_next_step(next_obs):
    """``next_step=False`` (behaviour cloning) drops each window's position L of the inputs and
    nothing else, on the host and inside jit, truncations with a recorded next observation too."""
    tree = handmade_tree(with_next_obs=next_obs)
    full = ds.spec_from_tree(tree, "<test>", T, add_agent_ids=True)
    short = ds.spec_from_tree(tree, "<test>", T, add_agent_ids=True, next_step=False)
    steps = ds.pad_steps(ds.steps_from_tree(tree, full), 4)
    rows, t0 = np.repeat(np.arange(B), T), np.tile(np.arange(T), B)
    for xp in (np, jax.numpy):
        args = (ds.StepArrays(*(None if x is None else xp.asarray(x) for x in steps)),
                xp.asarray(rows), xp.asarray(t0), 3)
        want, got = ds.gather_windows(*args, full, xp), ds.gather_windows(*args, short, xp)
        for name in ds.SequenceBatch._fields:
            expect = getattr(want, name)
            if name in ("obs", "legal", "state"):
                assert expect.shape[1] == 4 and getattr(got, name).shape[1] == 3
                expect = expect[:, :3]
            np.testing.assert_array_equal(getattr(got, name), expect, err_msg=name)
