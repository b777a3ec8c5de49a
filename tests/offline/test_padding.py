"""Padded rows (``metadata["marlvault"]["row_lengths"]``) never reach training, in both modes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from marlvault.offline import dataset as ds
from marlvault.tools.combine import combine
from marlvault.vault.vault import Vault

from .helpers import T, handmade_tree

LENGTHS = [10, 7]  # row 1: steps 7-9 are padding (they hold real-looking data, no done flag)


@pytest.fixture(scope="module")
def padded_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pad") / "padded")
    tree = handmade_tree()
    with Vault.create(path, tree, metadata={"marlvault": {"row_lengths": LENGTHS}}, chunks=4) as v:
        v.append(tree)
    return path


@pytest.fixture(scope="module")
def combined_path(tmp_path_factory):
    """Rows 0-1: ten steps; rows 2-3: six steps then zero padding (written by ``combine``)."""
    base = tmp_path_factory.mktemp("comb")
    long, short = handmade_tree(), handmade_tree()
    for key in ("observations", "actions", "rewards", "terminals", "truncations"):
        short[key] = np.ascontiguousarray(short[key][:, :6])
    short["infos"] = {k: np.ascontiguousarray(v[:, :6]) for k, v in short["infos"].items()}
    paths = []
    for name, tree in (("long", long), ("short", short)):
        with Vault.create(str(base / name), tree, chunks=4) as v:
            v.append(tree)
        paths.append(str(base / name))
    combine(str(base / "both"), paths)
    return str(base / "both")


def _windows(dataset: ds.OfflineDataset) -> tuple[ds.SequenceBatch, np.ndarray | None]:
    """Every window of the dataset, batch-major, and (memory mode) its ``(row, t0)``."""
    seq_len = dataset.config.seq_len
    if dataset.mode == "memory":
        data = dataset.device_data()
        steps = ds.StepArrays(*(None if x is None else np.asarray(x) for x in data.steps))
        rows, t0 = np.asarray(data.rows), np.asarray(data.t0)
        return ds.gather_windows(steps, rows, t0, seq_len, dataset.spec, np), np.stack([rows, t0])
    got = list(ds.stream_windows(dataset._blocks(), dataset.spec, dataset.config, dataset.path,
                                 dataset.row_lengths))
    return ds.SequenceBatch(*(np.concatenate(x) for x in zip(*got, strict=True))), None


@pytest.mark.parametrize("mode", ["memory", "stream"])
@pytest.mark.parametrize("seq_len", [1, 3])
def test_windows_stop_at_row_length(padded_path, mode, seq_len):
    config = ds.DatasetConfig(seq_len=seq_len, mode=mode, steps_per_chunk=3, add_agent_ids=False)
    dataset = ds.OfflineDataset(padded_path, config)
    np.testing.assert_array_equal(dataset.row_lengths, LENGTHS)
    batch, starts = _windows(dataset)
    code = batch.obs[:, :-1, 0, 0]  # [K, L] = 100 row + t of each window step
    row, t = np.rint(code // 100).astype(int), np.rint(code % 100).astype(int)
    live = batch.mask > 0
    assert live.any()
    assert np.all(t[live] < np.asarray(LENGTHS)[row[live]]), "a window uses a padded step"
    # stride = seq_len tiles every episode exactly once: every valid step, no padded one
    assert int(batch.mask.sum()) == sum(LENGTHS)
    # the last valid step of the padded row has no known next observation
    last = live & (row == 1) & (t == LENGTHS[1] - 1)
    assert last.sum() == 1 and np.all(batch.target_mask[last] == 0)
    if starts is not None:
        rows, t0 = starts
        assert np.all(t0 < np.asarray(LENGTHS)[rows])


def test_combined_vault_windows_skip_zero_padding(combined_path):
    with Vault.open(combined_path) as v:
        np.testing.assert_array_equal(v.row_lengths, [T, T, 6, 6])
    for mode in ("memory", "stream"):
        config = ds.DatasetConfig(seq_len=2, mode=mode, steps_per_chunk=4, add_agent_ids=False)
        dataset = ds.OfflineDataset(combined_path, config)
        batch, _ = _windows(dataset)
        live = batch.mask > 0
        # agent 1's first observation entry is >= 0.1 on every recorded step, 0 in the padding
        assert np.all(batch.obs[:, :-1, 1, 0][live] > 0), mode
        assert int(batch.mask.sum()) == 2 * T + 2 * 6, mode


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_sampled_batches_never_hold_padding(padded_path, mode):
    config = ds.DatasetConfig(seq_len=2, mode=mode, steps_per_chunk=3, shuffle_windows=8,
                              add_agent_ids=False)
    dataset = ds.OfflineDataset(padded_path, config)
    for batch in itertools.islice(dataset.batches(batch_size=16, seed=1), 5):
        code = np.asarray(batch.obs)[:-1, :, 0, 0]  # [L, K]
        live = np.asarray(batch.mask) > 0
        row, t = np.rint(code // 100).astype(int), np.rint(code % 100).astype(int)
        assert np.all(t[live] < np.asarray(LENGTHS)[row[live]])
