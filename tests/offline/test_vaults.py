"""Datasets read through real vaults: ours, and OG-MARL-layout vaults written by flashbax 0.1.3."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from marlvault.errors import DatasetError
from marlvault.offline import dataset as ds
from marlvault.vault.vault import Vault

from .helpers import A, B, N, O, T, handmade_tree

fbx_vault = pytest.importorskip("flashbax.vault.vault")
from flashbax.buffers.trajectory_buffer import TrajectoryBufferState  # noqa: E402


def _fbx_write(path: str, tree: dict) -> None:
    """One flashbax write of a full [B, T, ...] buffer state, as OG-MARL's recorders did."""
    parent, uid = os.path.split(path)
    root, name = os.path.split(parent)
    vault = fbx_vault.Vault(name, experience_structure=tree, rel_dir=root, vault_uid=uid)
    state = TrajectoryBufferState(experience=tree, current_index=np.int32(T),
                                  is_full=np.bool_(False))
    assert vault.write(state) == T


def _all_windows(dataset: ds.OfflineDataset, seq_len: int) -> list[tuple]:
    """Every window of the dataset (both modes) as sortable (code, mask, target_mask) tuples."""
    if dataset.mode == "memory":
        data = dataset.device_data()
        steps = ds.StepArrays(*(None if x is None else np.asarray(x) for x in data.steps))
        batch = ds.gather_windows(steps, np.asarray(data.rows), np.asarray(data.t0), seq_len,
                                  dataset.spec, np)
    else:
        got = list(ds.stream_windows(dataset._blocks(), dataset.spec, dataset.config))
        batch = ds.SequenceBatch(*(np.concatenate(x) for x in zip(*got, strict=True)))
    return sorted((float(batch.obs[k, 0, 0, 0]), tuple(batch.mask[k]), tuple(batch.target_mask[k]))
                  for k in range(batch.mask.shape[0]))


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_flashbax_og_marl_vault(tmp_path, mode):
    tree = handmade_tree(with_state=False)  # OG-MARL layout, no global state
    path = str(tmp_path / "vaults" / "lbf.vlt" / "Good")
    _fbx_write(path, tree)
    config = ds.DatasetConfig(seq_len=3, mode=mode, steps_per_chunk=4, add_agent_ids=True)
    dataset = ds.OfflineDataset(path, config)
    assert dataset.mode == mode
    spec = dataset.spec
    assert (spec.num_rows, spec.num_steps, spec.num_agents, spec.obs_dim) == (B, T, N, O)
    assert spec.action_dim == A and spec.input_dim == O + N and not spec.has_state
    windows = _all_windows(dataset, 3)
    assert len(windows) == 9
    assert (7.0, (1.0, 0.0, 0.0), (0.0, 0.0, 0.0)) in windows  # truncation, no next obs
    assert (3.0, (1.0, 0.0, 0.0), (1.0, 0.0, 0.0)) in windows  # terminal
    batch = next(dataset.batches(batch_size=5, seed=0))
    assert batch.obs.shape == (4, 5, N, O + N) and batch.mask.shape == (3, 5)
    np.testing.assert_allclose(dataset.episode_returns().sum(), 6.0 + 22.0 + (600.0 + 15.0))
    with pytest.raises(DatasetError, match="infos.state"):
        ds.OfflineDataset(path, ds.DatasetConfig(need_state=True))


def test_flashbax_vault_terminals_only(tmp_path):
    tree = handmade_tree(with_state=False)
    del tree["truncations"], tree["infos"]
    tree["terminals"][0, 7] = 1.0  # the cut episode now ends by termination
    path = str(tmp_path / "vaults" / "old.vlt" / "Medium")
    _fbx_write(path, tree)
    dataset = ds.OfflineDataset(path, ds.DatasetConfig(seq_len=1, stride=1))
    assert not dataset.spec.has_legals and dataset.spec.action_dim == 3
    batch = next(dataset.batches(batch_size=64, seed=1))
    assert float(batch.legal[0].min()) == 1.0  # (position 1 may be row-end padding)
    assert float(batch.truncated.max()) == 0.0


def test_ours_memory_and_stream_agree(tmp_path):
    tree = handmade_tree(with_next_obs=True)
    path = str(tmp_path / "ours.vlt")
    with Vault.create(path, tree, metadata={"marlvault": {"env_name": "lbf",
                                                          "scenario": "8x8-2p-2f-coop"}}) as v:
        v.append(tree)
    mem = ds.OfflineDataset(path, ds.DatasetConfig(seq_len=4, mode="memory"))
    stream = ds.OfflineDataset(path, ds.DatasetConfig(seq_len=4, mode="stream",
                                                      steps_per_chunk=3))
    assert mem.env_name == "lbf" and mem.scenario == "8x8-2p-2f-coop"
    assert mem.spec.has_next_obs and mem.spec.has_state
    assert _all_windows(mem, 4) == _all_windows(stream, 4)
    auto = ds.OfflineDataset(path, ds.DatasetConfig(memory_budget_bytes=10))
    assert auto.mode == "stream"
    sample = jax.jit(mem.sampler(batch_size=6))
    batch = sample(mem.device_data(), jax.random.key(0))
    assert batch.obs.shape == (5, 6, N, O + N) and batch.state.shape == (5, 6, 5)


def test_streaming_reads_only_the_leaves_its_windows_use(tmp_path):
    tree = handmade_tree(with_next_obs=True)
    tree["infos"]["next_state"] = tree["infos"]["state"].copy()
    tree["infos"]["extra"] = np.zeros((B, T, 7), np.float32)  # recorded, used by no learner
    path = str(tmp_path / "ours.vlt")
    with Vault.create(path, tree) as v:
        v.append(tree)
    for need_state, width in ((False, 0), (True, 5)):
        config = ds.DatasetConfig(seq_len=3, mode="stream", steps_per_chunk=4,
                                  need_state=need_state)
        dataset = ds.OfflineDataset(path, config)
        block = next(dataset._blocks())
        assert "extra" not in block["infos"]
        assert ("state" in block["infos"]) == ("next_state" in block["infos"]) == need_state
        assert "next_obs" in block["infos"] and "legals" in block["infos"]
        batch = next(dataset.batches(batch_size=4))
        assert batch.obs.shape == (4, 4, N, O + N) and batch.state.shape == (4, 4, width)
        assert dataset.spec.bootstrap_truncations
    reference = ds.OfflineDataset(path, ds.DatasetConfig(seq_len=3, mode="stream",
                                                         steps_per_chunk=4, need_state=True))
    lean = ds.OfflineDataset(path, ds.DatasetConfig(seq_len=3, mode="stream", steps_per_chunk=4))
    pairs = zip(reference.batches(4, seed=1), lean.batches(4, seed=1), strict=False)
    for _, (a, b) in zip(range(12), pairs, strict=False):  # same windows, same shuffle
        for name in ds.SequenceBatch._fields:
            if name != "state":
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
