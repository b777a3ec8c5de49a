"""Streaming: peak memory of the tools does not grow with the vault's size (slow).

Measured on the 2-core dev VM, 2k -> 8k steps (numpy peak via tracemalloc; process peak RSS), MB:
scan 50 -> 62; 276 -> 295. subsample 111 -> 118; 371 -> 400. combine 91 -> 91; 373 -> 381
(2026-11-29; reads now decode into numpy arrays, so the numpy peak includes the streaming
windows: scan's window holds the whole small vault's flags and rewards, 3 MB vs 12 MB, which is
its growth). The RSS growth is native memory (tensorstore, allocator), not buffers the tools hold.

Builds a recorded-like vault (B=32, 4 agents, obs 66 float32, state 132) of 2,000 and of 8,000
steps (about 110 MB and 440 MB uncompressed) and runs each tool in a fresh process, comparing
peak RSS. Coverage is checked with a small hash budget (partitioned to temporary files).
"""

from __future__ import annotations

import json

import pytest
from memory_vaults import MAKE, run_python

RUN = """
import importlib, json, resource, sys, tracemalloc
tracemalloc.start()  # numpy reports its buffers to tracemalloc
tools = importlib.import_module("marlvault.tools")
what, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
if what == "scan":
    tools.scan_episodes(path, update_key=None)
elif what == "subsample":
    tools.subsample(path, out, tools.SubsampleSpec(transitions=int(sys.argv[4]), rows=4))
elif what == "combine":
    tools.combine(out, [path, path])
elif what == "coverage":
    tools.coverage(path, memory_budget_mb=float(sys.argv[5]))
print(json.dumps([tracemalloc.get_traced_memory()[1] / 2**20,
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))
"""


@pytest.mark.slow
def test_peak_memory_independent_of_size(tmp_path):
    sizes = {"small": 2000, "large": 8000}
    for name, steps in sizes.items():
        run_python(MAKE, str(tmp_path / name), str(steps))
    peaks = {}
    for what in ("scan", "subsample", "combine"):
        for name, steps in sizes.items():
            out = str(tmp_path / f"{what}-{name}")
            peaks[what, name] = json.loads(run_python(RUN, what, str(tmp_path / name), out,
                                               str(steps * 32 // 2)))
    for what in ("scan", "subsample", "combine"):
        (py_s, rss_s), (py_l, rss_l) = peaks[what, "small"], peaks[what, "large"]
        # Python/numpy buffers: constant up to a few MB (episode table: ~60 bytes per episode)
        assert py_l - py_s < 16, f"{what}: numpy peak grew {py_l - py_s:.0f} MB ({peaks})"
        # whole process, including tensorstore's native caches and allocator slack
        assert rss_l - rss_s < 200, f"{what}: peak RSS grew {rss_l - rss_s:.0f} MB ({peaks})"


@pytest.mark.slow
def test_coverage_memory_bounded_by_budget(tmp_path):
    """coverage with a 4 MiB hash budget partitions both vaults (64k and 256k transitions, 5
    counters) and holds no more numpy memory for the larger one; with the default budget both
    are counted in memory, and the larger one needs more (the contrast shows the test can fail)."""
    sizes = {"small": 2000, "large": 8000}
    for name, steps in sizes.items():
        run_python(MAKE, str(tmp_path / name), str(steps))
    peaks = {(mb, name): json.loads(run_python(RUN, "coverage", str(tmp_path / name), "-", "0", mb))
             for mb in ("4", "256") for name in sizes}
    part_growth = peaks["4", "large"][0] - peaks["4", "small"][0]
    mem_growth = peaks["256", "large"][0] - peaks["256", "small"][0]
    assert part_growth < 4, f"partitioned coverage: numpy peak grew {part_growth:.1f} MB ({peaks})"
    assert mem_growth > part_growth + 4, f"in-memory growth {mem_growth:.1f} MB ({peaks})"
