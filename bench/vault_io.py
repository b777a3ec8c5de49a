"""Vault I/O benchmark: marlvault vs flashbax 0.1.3 on the same recorded-like data.

Data (B=32 rows, 4 agents): observations (66,) float32 of mostly small integers (grid-world
features), legal masks (5,) float32, actions int32, rewards float32 (mostly 0), terminal and
truncation flags. Written in blocks of 256 steps, as a recorder hands over rollouts.

Measures append MB/s (uncompressed bytes / wall time, durable at the end), full-read MB/s,
peak RSS of a streaming read (subprocess) for two vault sizes, bytes on disk, and ``dd`` with
fsync as the physical limit. Optionally (``--codecs``) compares codecs on a smaller sample.

    .venv/bin/python bench/vault_io.py --size-gb 1.0 [--codecs] [--dir /tmp/vault_bench]

``--real PATH`` instead copies the first ``--real-steps`` steps of a recorded vault into both
systems (appends of the recorded rollout length, timed) and compares full reads of the copies,
best of ``--repeats`` fresh processes each, side by side:

    .venv/bin/python bench/vault_io.py --real vaults/rware.vlt/ippo [--real-steps 8192]

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

B, N, OBS, ACT, BLOCK = 32, 4, 66, 5, 256


def make_block(seed: int) -> dict:
    """One block of recorded-like data, every leaf (B, BLOCK, ...)."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((B, BLOCK, N, OBS), np.float32)
    obs[..., :10] = rng.integers(0, 8, (B, BLOCK, N, 10))  # positions, directions, loads
    obs[..., 10:] = rng.random((B, BLOCK, N, OBS - 10)) < 0.08  # sparse occupancy grid
    ends = rng.random((B, BLOCK)) < 0.01
    trunc = ends & (rng.random((B, BLOCK)) < 0.5)
    agents = np.ones((1, 1, N), np.float32)
    return {
        "observations": obs,
        "actions": rng.integers(0, ACT, (B, BLOCK, N)).astype(np.int32),
        "rewards": (rng.random((B, BLOCK, N)) < 0.02).astype(np.float32),
        "terminals": ((ends & ~trunc)[..., None] * agents).astype(np.float32),
        "truncations": (trunc[..., None] * agents).astype(np.float32),
        "infos": {"legals": (rng.random((B, BLOCK, N, ACT)) < 0.9).astype(np.float32)},
    }


def block_bytes(block: dict) -> int:
    import jax

    return sum(x.nbytes for x in jax.tree_util.tree_leaves(block))


def du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def write_marlvault(path: str, pool: list[dict], n_blocks: int, compression=None) -> float:
    from marlvault.vault import Vault

    start = time.perf_counter()
    with Vault.create(path, pool[0], compression=compression) as vault:
        for i in range(n_blocks):
            vault.append(pool[i % len(pool)])
    return time.perf_counter() - start


def write_flashbax(root: str, pool: list[dict], n_blocks: int, name: str = "bench") -> float:
    import jax
    from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
    from flashbax.vault import Vault

    start = time.perf_counter()
    vault = Vault(name, experience_structure=pool[0], rel_dir=root, vault_uid="fbx")
    for i in range(n_blocks):
        block = pool[i % len(pool)]
        steps = jax.tree_util.tree_leaves(block)[0].shape[1]
        state = TrajectoryBufferState(experience=block, current_index=steps, is_full=False)
        vault.write(state, source_interval=(0, steps))
    return time.perf_counter() - start


_CHILD = r"""
import json, resource, sys, time
def cpu():  # user + system CPU seconds of this process, all threads
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def hwm():  # peak RSS of this process image in kB (ru_maxrss survives exec on Linux)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
kind, path, mode = sys.argv[1:4]
base = hwm()
c0, t0 = cpu(), time.perf_counter()
nbytes = 0
if kind == "marlvault":
    import jax
    from marlvault.vault import Vault
    v = Vault.open(path)
    base = hwm()
    c0, t0 = cpu(), time.perf_counter()
    if mode == "stream":
        for _, chunk in v.iter_chunks(flat=True):
            nbytes += sum(x.nbytes for x in chunk.values())
    else:
        nbytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(v.read()))
else:
    import jax, os
    from flashbax.vault import Vault
    root, uid = os.path.split(path)
    root, name = os.path.split(root)
    v = Vault(name, rel_dir=root, vault_uid=uid)
    base = hwm()
    c0, t0 = cpu(), time.perf_counter()
    exp = v.read().experience
    jax.block_until_ready(exp)
    nbytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(exp))
dt, dc = time.perf_counter() - t0, cpu() - c0
peak = hwm()
print(json.dumps({"seconds": dt, "cpu_seconds": dc, "bytes": nbytes, "peak_rss_mb": peak / 1024,
                  "base_rss_mb": base / 1024}))
"""


def read_child(kind: str, path: str, mode: str) -> dict:
    """Run a read in a fresh process; returns seconds, CPU seconds, bytes, peak and baseline RSS
    (MB)."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, path, mode], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def dd_speed(directory: str, mb: int) -> float:
    target = os.path.join(directory, "dd.bin")
    start = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mb}", "conv=fsync"],
        capture_output=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    os.unlink(target)
    return mb * 1.048576 / seconds


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def compare_codecs(workdir: str, pool: list[dict], n_blocks: int) -> list[str]:
    from marlvault.vault import CODECS

    raw = block_bytes(pool[0]) * n_blocks
    rows = [
        "| codec | append MB/s | full read MB/s | bytes on disk | ratio |",
        "|---|---|---|---|---|",
    ]
    for name in ("gzip", "zstd", "blosc-lz4", "blosc-zstd"):
        path = os.path.join(workdir, f"codec-{name}")
        seconds = write_marlvault(path, pool, n_blocks, compression=CODECS[name])
        drop_caches()
        read = read_child("marlvault", path, "full")
        size = du(path)
        rows.append(
            f"| {name} | {raw / seconds / 1e6:.0f} | {read['bytes'] / read['seconds'] / 1e6:.0f} "
            f"| {size / 1e6:.1f} MB | {raw / size:.1f}x |"
        )
        shutil.rmtree(path)
    return rows


def real_pool(source: str, steps: int | None) -> list[dict]:
    """The first ``steps`` steps of a recorded vault, as blocks of its chunk length."""
    from marlvault.vault import Vault

    with Vault.open(source) as vault:
        stop = min(steps or vault.num_steps, vault.num_steps)
        block = vault.chunk_steps
        return [vault.read(a, min(a + block, stop)) for a in range(0, stop, block)]


def compare_real(workdir: str, source: str, steps: int | None, repeats: int) -> list[str]:
    """Append and full-read speed of ours vs flashbax on a copy of a recorded vault."""
    pool = real_pool(source, steps)
    raw = sum(block_bytes(b) for b in pool)
    mv_path = os.path.join(workdir, "real-marlvault")
    systems = [
        ("marlvault", "marlvault", mv_path, lambda: write_marlvault(mv_path, pool, len(pool))),
        (
            "flashbax 0.1.3",
            "flashbax",
            os.path.join(workdir, "real", "fbx"),
            lambda: write_flashbax(workdir, pool, len(pool), name="real"),
        ),
    ]
    appends = {name: raw / write() / 1e6 for name, _, _, write in systems}
    reads: dict[str, list[dict]] = {name: [] for name, *_ in systems}
    for _ in range(repeats):  # alternate the systems so both see the same machine load
        for name, kind, path, _ in systems:
            reads[name].append(read_child(kind, path, "full"))
    results = {}
    for name, _, path, _ in systems:
        best = min(r["seconds"] for r in reads[name])
        cpu = min(r["cpu_seconds"] for r in reads[name])
        results[name] = (appends[name], reads[name][0]["bytes"] / best / 1e6, cpu, du(path))
    steps_copied = sum(next(iter(b.values())).shape[1] for b in pool)
    rows = [
        f"real data: {source}, first {steps_copied} steps, {raw / 1e6:.0f} MB uncompressed; "
        f"full read best of {repeats} fresh processes (systems alternating); cpus={os.cpu_count()}, "
        f"load={os.getloadavg()[0]:.1f}",
        "",
        "| system | append MB/s | full read MB/s | full read CPU s | bytes on disk |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| {n} | {a:.0f} | {r:.0f} | {c:.2f} | {d / 1e6:.1f} MB |"
        for n, (a, r, c, d) in results.items()
    ]
    (ma, mr, mc, _), (fa, fr, fc, _) = results["marlvault"], results["flashbax 0.1.3"]
    rows.append(
        f"\nspeed-up vs flashbax: append {ma / fa:.1f}x, full read {mr / fr:.1f}x "
        f"(CPU time {fc / mc:.1f}x less)"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="uncompressed data per system")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    parser.add_argument("--codecs", action="store_true", help="also compare codecs (1/5 size)")
    parser.add_argument("--skip-flashbax", action="store_true")
    parser.add_argument("--real", default=None, help="a recorded vault to copy and compare on")
    parser.add_argument("--real-steps", type=int, default=None, help="steps to copy (all)")
    parser.add_argument("--repeats", type=int, default=3, help="full reads per system (best)")
    args = parser.parse_args()
    workdir = args.dir or tempfile.mkdtemp(prefix="vault_bench_")
    os.makedirs(workdir, exist_ok=True)
    if args.real:
        print("\n".join(compare_real(workdir, args.real, args.real_steps, args.repeats)))
        if not args.dir:
            shutil.rmtree(workdir)
        return
    pool = [make_block(seed) for seed in range(8)]
    per_block = block_bytes(pool[0])
    n_blocks = max(1, int(args.size_gb * 1e9 / per_block))
    raw = per_block * n_blocks
    print(
        f"data: B={B}, N={N}, obs={OBS}, {n_blocks} blocks x {BLOCK} steps = {raw / 1e9:.2f} GB; "
        f"cpus={os.cpu_count()}, load={os.getloadavg()[0]:.1f}, dir={workdir}"
    )
    if args.codecs:
        print("\n" + "\n".join(compare_codecs(workdir, pool, max(4, n_blocks // 5))))
    results = {}
    mv_path = os.path.join(workdir, "marlvault")
    systems = [("marlvault", mv_path, lambda: write_marlvault(mv_path, pool, n_blocks))]
    fbx_path = os.path.join(workdir, "bench", "fbx")
    if not args.skip_flashbax:
        systems.append(
            ("flashbax 0.1.3", fbx_path, lambda: write_flashbax(workdir, pool, n_blocks))
        )
    for name, path, write in systems:
        seconds = write()
        cold = drop_caches()
        read = read_child("marlvault" if name == "marlvault" else "flashbax", path, "full")
        results[name] = {
            "append": raw / seconds / 1e6,
            "read": read["bytes"] / read["seconds"] / 1e6,
            "read_peak": read["peak_rss_mb"],
            "size": du(path),
            "cold": cold,
        }
    small = os.path.join(workdir, "marlvault-small")
    write_marlvault(small, pool, max(1, n_blocks // 8))
    stream_big = read_child("marlvault", mv_path, "stream")
    stream_small = read_child("marlvault", small, "stream")
    dd = dd_speed(workdir, min(1024, max(64, int(raw / 4e6))))
    print(
        "\n| system | append MB/s | full read MB/s | full-read peak RSS | bytes on disk | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['append']:.0f} | {r['read']:.0f} | {r['read_peak']:.0f} MB "
            f"| {r['size'] / 1e6:.1f} MB | {raw / r['size']:.1f}x |"
        )
    print(f"| dd conv=fsync (physical limit) | {dd:.0f} | | | | |")
    if "flashbax 0.1.3" in results:
        mv, fb = results["marlvault"], results["flashbax 0.1.3"]
        print(
            f"\nspeed-up vs flashbax: append {mv['append'] / fb['append']:.1f}x, full read "
            f"{mv['read'] / fb['read']:.1f}x, size {mv['size'] / fb['size']:.2f} of flashbax's; "
            f"reads from {'cold cache' if mv['cold'] else 'page cache (could not drop caches)'}"
        )
    print("\n| streaming read (iter_chunks) | vault size | peak RSS | baseline RSS after open |")
    print("|---|---|---|---|")
    for label, r in (("full", stream_big), ("1/8", stream_small)):
        print(
            f"| marlvault {label} | {r['bytes'] / 1e9:.2f} GB | {r['peak_rss_mb']:.0f} MB "
            f"| {r['base_rss_mb']:.0f} MB |"
        )
    if not args.dir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
