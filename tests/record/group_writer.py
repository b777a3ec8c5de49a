"""One process of a writer group, for tests/record/test_group_vault.py (run as a script).

    python group_writer.py DIR PROCESS_ID NUM_PROCESSES GROUP_ID STEPS [--resume] [--pause S]
        [--url VAULT_URL]

Process 0 starts the OCDBT coordinator and writes its address to ``DIR/coordinator``, then
creates (or with ``--resume`` reopens and cuts) ``DIR/v.vlt`` (or ``--url``) and writes ``DIR/ready``; the
others wait for both files, then open the vault as members. Every process appends ``STEPS``
steps of its rows in blocks of 5 (pausing ``S`` seconds between blocks) and prints
``appended N`` after each; row ``r`` step ``t`` holds ``r * 1000 + t + offset`` in
``observations`` (offset: the vault's length when opened).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from marlvault.vault import Vault
from marlvault.vault.shared import WriterGroup, start_coordinator

B = 4


def example() -> dict:
    return batch(np.arange(B), 0, 1)


def batch(rows: np.ndarray, start: int, n: int) -> dict:
    t = np.arange(start, start + n)
    obs = (rows[:, None] * 1000 + t[None, :]).astype(np.float32)
    ends = ((t % 7) == 6).astype(np.float32)[None, :].repeat(len(rows), 0)
    return {
        "observations": obs[..., None].repeat(3, -1),
        "actions": np.zeros((len(rows), n), np.int32),
        "rewards": np.ones((len(rows), n), np.float32),
        "terminals": ends,
        "truncations": np.zeros((len(rows), n), np.float32),
    }


def wait_for(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("process_id", type=int)
    p.add_argument("num_processes", type=int)
    p.add_argument("group_id")
    p.add_argument("steps", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--wait-s", type=float, default=20.0)
    p.add_argument("--url", default=None, help="vault location (default DIR/v.vlt)")
    a = p.parse_args()
    path, coord_file = a.url or os.path.join(a.dir, "v.vlt"), os.path.join(a.dir, "coordinator")
    server = None
    if a.process_id == 0:
        server, address = start_coordinator("127.0.0.1")
        with open(coord_file + ".tmp", "w") as fh:
            fh.write(address)
        os.rename(coord_file + ".tmp", coord_file)
    wait_for(coord_file)
    with open(coord_file) as fh:
        address = fh.read()
    group = WriterGroup(a.process_id, a.num_processes, a.group_id, address, a.wait_s)
    if a.process_id == 0:
        vault = Vault.create(path, example(), chunks=8, group=group, exist_ok=a.resume)
        if a.resume:
            print("cut", vault.cut_tail(), flush=True)
        open(os.path.join(a.dir, "ready"), "w").close()
    else:
        wait_for(os.path.join(a.dir, "ready"))
        vault = Vault.open(path, "a", group=group)
        if a.resume:
            print("cut", vault.cut_tail(), flush=True)
    rows = np.arange(*vault.rows_written)
    offset = vault.num_steps
    print("opened", offset, flush=True)
    for s in range(0, a.steps, 5):
        vault.append(batch(rows, offset + s, 5))
        print("appended", s + 5, flush=True)
        time.sleep(a.pause)
    vault.close()
    print("closed", vault.committed_steps, flush=True)
    del server


if __name__ == "__main__":
    main()
