"""Streaming mode's host memory does not grow with the vault (slow).

The same recorded-like vaults as the tools' memory test (B=32, 4 agents, obs 66, state 132;
2,000 and 8,000 steps, about 110 and 440 MB decoded), each streamed in a fresh process through
the same number of QMIX-shaped batches (windows of 20 steps with the state; at least two passes
over the larger vault), comparing numpy's peak (``tracemalloc``, started once at process start)
and the process's peak RSS.

Measured on the 2-core dev VM (2026-11-30): numpy peak 288.6 MB for both vaults (the shuffle
buffer of 4,096 windows is ~150 MB of it, the decoded block and the one read ahead most of the
rest), peak RSS 411 and 410 MB; the larger vault is 422 MB decoded.
"""

from __future__ import annotations

import json

import pytest
from memory_vaults import MAKE, run_python

STREAM = """
import json, resource, sys, tracemalloc
tracemalloc.start()  # numpy reports its buffers to tracemalloc
from marlvault.offline.dataset import DatasetConfig, OfflineDataset
path, groups = sys.argv[1], int(sys.argv[2])
ds = OfflineDataset(path, DatasetConfig(seq_len=20, mode="stream", need_state=True))
stream = ds.stream(batch_size=32, seed=0)
for _ in range(groups):
    stream.group(10)
print(json.dumps([tracemalloc.get_traced_memory()[1] / 2**20,
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, ds.nbytes / 2**20]))
"""


@pytest.mark.slow
def test_streaming_memory_does_not_grow_with_the_vault(tmp_path):
    sizes = {"small": 2000, "large": 8000}
    groups = 2 * (32 * 8000 // 20) // (32 * 10)  # two passes over the large vault
    peaks = {}
    for name, steps in sizes.items():
        run_python(MAKE, str(tmp_path / name), str(steps))
        peaks[name] = json.loads(run_python(STREAM, str(tmp_path / name), str(groups)))
    (py_s, rss_s, _), (py_l, rss_l, decoded_l) = peaks["small"], peaks["large"]
    assert py_l - py_s < 16, f"numpy peak grew {py_l - py_s:.0f} MB ({peaks})"
    # the shuffle buffer (4096 windows, ~150 MB here) and a few blocks, never the whole vault
    assert py_l < decoded_l, f"numpy peak {py_l:.0f} MB vs a {decoded_l:.0f} MB vault"
    assert rss_l - rss_s < 200, f"peak RSS grew {rss_l - rss_s:.0f} MB ({peaks})"
