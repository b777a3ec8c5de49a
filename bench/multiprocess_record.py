"""One vault written by 1 and by 2 processes; training SPS of 1 x 2 devices vs 2 x 1 device.

Part 1, recording throughput (no learner): the same data, RWARE-like blocks of ``bench/vault_io.py``
(B=32 rows, 4 agents, 66 observations, blocks of 256 steps), appended to a new vault by

- one process writing all 32 rows (the single writer, one atomic commit per block), and
- a writer group of two processes writing 16 rows each through the OCDBT coordinator that
  process 0 runs (``marlvault.vault.shared``),

each from process start-up to the last commit being durable (``close``), best of ``--repeats``
alternated rounds. MB/s = uncompressed bytes committed / wall seconds of the slowest process.

Part 2, training SPS: ``marlvault train ippo`` (RWARE tiny-2ag, ``--num-envs`` envs, recording
off and on) as 1 process with 2 forced CPU devices and as 2 processes with 1 device each
(``marlvault launch --nproc 2``), SPS from the run's summary line.

    .venv/bin/python bench/multiprocess_record.py [--blocks 64] [--repeats 3] [--steps 262144]

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from vault_io import B, block_bytes, make_block  # noqa: E402


def _worker(argv: list[str]) -> None:
    """``--worker DIR PROCESS_ID NUM_PROCESSES BLOCKS``: append BLOCKS blocks of own rows."""
    from marlvault.vault import Vault
    from marlvault.vault.shared import WriterGroup, start_coordinator

    d, me, count, blocks = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    pool = [make_block(seed) for seed in range(4)]
    path = os.path.join(d, "v.vlt")
    start = time.perf_counter()
    server = None  # process 0's OCDBT coordinator: must outlive every write of the group
    if count == 1:
        vault = Vault.create(path, pool[0])
    else:
        coord = os.path.join(d, "coordinator")
        if me == 0:
            server, address = start_coordinator("127.0.0.1")
            Path(coord + ".tmp").write_text(address)
            os.rename(coord + ".tmp", coord)
        while not os.path.exists(coord):
            time.sleep(0.01)
        group = WriterGroup(me, count, "bench", Path(coord).read_text(), wait_s=600)
        if me == 0:
            vault = Vault.create(path, pool[0], group=group)
            Path(d, "ready").touch()
        else:
            while not os.path.exists(os.path.join(d, "ready")):
                time.sleep(0.01)
            vault = Vault.open(path, "a", group=group)
        lo, hi = vault.rows_written
        pool = [{k: _rows(v, lo, hi) for k, v in b.items()} for b in pool]
    for i in range(blocks):
        vault.append(pool[i % len(pool)])
    vault.close()
    print(f"elapsed {time.perf_counter() - start:.4f}", flush=True)
    del server


def _rows(tree, lo: int, hi: int):
    if isinstance(tree, dict):
        return {k: _rows(v, lo, hi) for k, v in tree.items()}
    return tree[lo:hi]


def record_round(workdir: str, processes: int, blocks: int) -> float:
    """Seconds until every process of a fresh vault's writers has closed (the slowest)."""
    d = tempfile.mkdtemp(dir=workdir)
    try:
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", d, str(i),
                                   str(processes), str(blocks)], stdout=subprocess.PIPE,
                                  text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
                 for i in range(processes)]  # fmt: skip
        outs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit(f"writer failed: {outs}")
        return max(float(re.search(r"elapsed ([\d.]+)", o).group(1)) for o in outs)
    finally:
        shutil.rmtree(d, ignore_errors=True)


_SPS = re.compile(r"training SPS ([\d,]+)")


def train_sps(processes: int, num_envs: int, steps: int, record: str | None) -> float:
    """Training SPS of IPPO on RWARE tiny-2ag as ``processes`` x (2 / processes) CPU devices."""
    args = ["train", "ippo", "env=rware", "scenario=tiny-2ag", f"arch.num_envs={num_envs}",
            f"system.total_timesteps={steps}", "arch.num_evaluation=4",
            "arch.num_eval_episodes=8", "logger.tensorboard=false", "logger.checkpoint=false",
            f"logger.base_dir={tempfile.mkdtemp()}"]  # fmt: skip
    if record:
        args.append(f"record.path={record}")
    env = dict(os.environ)
    if processes == 1:
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        cmd = [sys.executable, "-m", "marlvault", *args]
    else:
        cmd = [sys.executable, "-m", "marlvault", "launch", "--nproc", str(processes), "--",
               *args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    found = _SPS.findall(out.stdout + out.stderr)
    if out.returncode or not found:
        raise SystemExit(f"training failed ({out.returncode}): {(out.stdout + out.stderr)[-2000:]}")
    return float(found[-1].replace(",", ""))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=64, help="256-step blocks per vault")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=262144, help="env steps per training run")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--dir", default=None, help="where vaults are written (default: a temp dir)")
    p.add_argument("--skip-train", action="store_true")
    a = p.parse_args()
    workdir = a.dir or tempfile.mkdtemp(prefix="mp_record_")
    os.makedirs(workdir, exist_ok=True)
    mb = block_bytes(make_block(0)) * a.blocks / 1e6
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs, {mb:.0f} MB uncompressed per vault (B={B}, {a.blocks} x 256 "
          "steps)\n")  # fmt: skip
    best = {1: np.inf, 2: np.inf}
    for _ in range(a.repeats):
        for n in (1, 2):
            best[n] = min(best[n], record_round(workdir, n, a.blocks))
    print("| writers | wall s (best) | MB/s committed | ratio 2 / 1 |\n|---|---|---|---|")
    for n in (1, 2):
        print(f"| {n} process{'es' if n > 1 else ''} | {best[n]:.2f} | {mb / best[n]:.0f} | "
              f"{'' if n == 1 else f'{best[1] / best[2]:.2f}'} |")  # fmt: skip
    if a.skip_train:
        return
    print("\n| training (RWARE tiny-2ag IPPO) | recording | SPS | ratio 2x1 / 1x2 |")
    print("|---|---|---|---|")
    for record in (False, True):
        sps = {}
        for n in (1, 2):
            path = os.path.join(tempfile.mkdtemp(dir=workdir), "r.vlt") if record else None
            sps[n] = train_sps(n, a.num_envs, a.steps, path)
        for n, label in ((1, "1 process x 2 devices"), (2, "2 processes x 1 device")):
            ratio = "" if n == 1 else f"{sps[2] / sps[1]:.3f}"
            print(f"| {label} | {'on' if record else 'off'} | {sps[n]:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
