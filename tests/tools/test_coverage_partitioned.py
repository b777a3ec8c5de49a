"""coverage with a tiny memory budget: hash partitions in temporary files, same exact figures."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.cli import app
from marlvault.errors import ConfigError
from marlvault.tools.combine import combine
from marlvault.tools.coverage import PartitionedCounter, coverage, partition_bits

from .helpers import make_tree, write_vault
from .test_combine_coverage import _direct

TINY_MB = 0.0005  # 16 hashes: forces 2**4 partitions for the 75-transition vault

runner = CliRunner()


def _repetitive_vault(tmp_path):
    tree = make_tree(seed=4)
    tree["observations"][..., 0] = (tree["observations"][..., 0] % 3) + 0.25  # repeats likely
    tree["actions"] = tree["actions"] % 2
    return tree, write_vault(str(tmp_path / "cov"), tree)


def _figures(cov):
    d = cov.to_dict()
    d.pop("partitions")
    return d


@pytest.mark.parametrize("decimals", [0, 2])
def test_partitioned_equals_in_memory_and_direct_count(tmp_path, decimals):
    tree, path = _repetitive_vault(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    small = coverage(path, decimals=decimals, budget=1, memory_budget_mb=TINY_MB,
                     tmp_dir=str(scratch))
    big = coverage(path, decimals=decimals, budget=1)
    assert small.partitions == 16 and big.partitions == 1
    assert _figures(small) == _figures(big)
    joint, agents, total = _direct(tree, decimals)
    assert small.transitions == total
    assert small.joint_unique == joint < total and small.agent_unique == tuple(agents)
    assert os.listdir(scratch) == []  # the temporary folder and its files are gone


def test_partitioned_skips_padding(tmp_path, vault_path):
    short = make_tree([[4, 6, 8], [3, "tail15"]], steps=18, seed=9)
    other = write_vault(str(tmp_path / "short"), short, appends=2)
    both = str(tmp_path / "both")
    combine(both, [vault_path, other], budget=1)
    small = coverage(both, decimals=1, budget=200, memory_budget_mb=TINY_MB)
    assert small.partitions > 1 and small.transitions == 3 * 25 + 2 * 18
    assert _figures(small) == _figures(coverage(both, decimals=1, budget=200))


def test_partitioned_counter_writes_files_and_counts_exactly(tmp_path):
    rng = np.random.default_rng(0)
    c = PartitionedCounter(str(tmp_path), "c0", bits=3, flush_entries=50, block_entries=7)
    seen = set()
    for _ in range(40):
        # few distinct values, spread over the whole 64-bit range, repeated across batches
        h = rng.choice(np.array([3, 2**61 + 5, 2**63 + 1, 2**64 - 1, 12345, 2**62], np.uint64),
                       size=9)
        h = np.concatenate([h, rng.integers(0, 2**63, size=5, dtype=np.uint64) * np.uint64(2)])
        seen.update(h.tolist())
        c.add(h)
    files = sorted(os.listdir(tmp_path))
    assert len(files) > 1 and all(f.startswith("c0-p") for f in files)  # flushed to partitions
    for f in files:  # each file holds only its partition's top bits
        k = int(f[4:8])
        top = np.fromfile(tmp_path / f, "<u8") >> np.uint64(61)
        assert np.all(top == k), f
    assert c.count == len(seen)
    assert c.count == len(seen) and os.listdir(tmp_path) == []  # counted once, files deleted
    with pytest.raises(ConfigError, match="after count"):
        c.add(np.zeros(1, np.uint64))


def test_partition_bits_from_budget():
    assert partition_bits(75, 3, 256) == 0  # fits: in memory, no files
    assert partition_bits(75, 3, TINY_MB) == 4
    # bits grow with the vault so that one partition fits: 1e9 transitions in 256 MiB
    bits = partition_bits(10**9, 5, 256)
    per_partition = 10**9 / 2**bits
    assert 2**20 < per_partition <= 256 * 2**20 / 32 / 2 / 1.25
    with pytest.raises(ConfigError, match="memory_budget_mb > 0"):
        partition_bits(75, 3, 0)
    with pytest.raises(ConfigError, match="raise --memory-mb"):
        partition_bits(10**9, 5, TINY_MB)


def test_cli_memory_mb_and_tmp_dir(tmp_path, vault_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    args = ["vault", "coverage", vault_path, "--json"]
    res = runner.invoke(app, [*args, "--memory-mb", str(TINY_MB), "--tmp-dir", str(scratch)])
    assert res.exit_code == 0, res.output
    small = json.loads(res.output)
    big = json.loads(runner.invoke(app, args).output)
    assert small.pop("partitions") == 16 and big.pop("partitions") == 1
    assert small == big and os.listdir(scratch) == []
    text = runner.invoke(app, ["vault", "coverage", vault_path, "--memory-mb", str(TINY_MB)])
    assert "counted in 16 hash partitions" in text.output
    bad = runner.invoke(app, [*args, "--memory-mb", str(TINY_MB),
                              "--tmp-dir", str(tmp_path / "missing")])
    assert bad.exit_code == ConfigError.exit_code and "missing" in bad.output
