"""One jitted update per call against the same update in a ``lax.scan``, on a fixed batch.

Streaming (``offline/train.py``'s ``_Updater``) called ``jit(algo.update)`` once per host batch
when this was written (it now scans groups of 10); memory mode runs many updates in one scanned
program. This isolates the difference from the
data path: one streamed batch is put on the device once and every update reuses it. For each
registered algorithm (as in ``bench/offline_sps.py``) it prints the XLA scratch memory of one
update (``temp``: allocated afresh by every call), the host batch rate of the streaming iterator,
and updates/s and **process CPU ms per update** both ways (CPU time is the steadier number on a
shared machine). Usage::

    .venv/bin/python bench/offline_percall.py [--updates 50] [--only iddpg-cql bc]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from offline_sps import _dataset, cases, write_vaults  # noqa: E402


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _timed(fn, n: int) -> tuple[float, float]:
    """``(updates/s, CPU ms per update)`` of ``fn()`` (``n`` updates)."""
    wall, cpu = time.perf_counter(), _cpu()
    jax.block_until_ready(fn())
    return n / (time.perf_counter() - wall), 1000 * (_cpu() - cpu) / n


def measure(entry, config, path: str, n: int, repeats: int) -> dict:
    ds = _dataset(entry, config, path, "stream")
    algo = entry.make(config, ds.spec)
    batches = ds.batches(algo.batch_size, seed=0)
    next(batches)
    start = time.perf_counter()
    for _ in range(100):
        next(batches)
    host = 100 / (time.perf_counter() - start)
    batch = jax.device_put(next(batches))
    state = jax.jit(algo.init)(jax.random.key(0))
    update = jax.jit(algo.update)
    compiled = update.lower(state, batch).compile()
    scan = jax.jit(lambda s, b: jax.lax.scan(lambda c, _: algo.update(c, b), s, None, length=n))

    def per_call():
        s = state
        for _ in range(n):
            s, _ = update(s, batch)
        return s

    jax.block_until_ready((per_call(), scan(state, batch)))  # compile, warm up
    calls, scans = [], []
    for _ in range(repeats):  # alternated; the least CPU of each
        calls.append(_timed(per_call, n))
        scans.append(_timed(lambda: scan(state, batch), n))
    call, scanned = min(calls, key=lambda r: r[1]), min(scans, key=lambda r: r[1])
    return {"temp": compiled.memory_analysis().temp_size_in_bytes / 2**20, "host": host,
            "call": call, "scan": scanned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="algorithm names (default: all registered)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, _ = write_vaults(tmp, args.rows, args.steps)
        print("| algorithm | XLA temp MiB | host batches/s | per call: updates/s, CPU ms | "
              "in scan: updates/s, CPU ms | CPU per call / in scan | load |")
        print("|---|---|---|---|---|---|---|")
        for name, (entry, config, cont) in cases().items():
            if args.only and entry.name not in args.only:
                continue
            r = measure(entry, config, paths[cont], args.updates, args.repeats)
            (cr, cc), (sr, sc) = r["call"], r["scan"]
            print(f"| {name} | {r['temp']:.1f} | {r['host']:.0f} | {cr:.1f}, {cc:.1f} | "
                  f"{sr:.1f}, {sc:.1f} | {cc / sc:.2f} | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
