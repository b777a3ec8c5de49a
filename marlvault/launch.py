"""``marlvault launch --nproc N -- COMMAND ...``: N processes of one run on this machine.

Each process runs ``marlvault COMMAND ... dist.coordinator=127.0.0.1:PORT dist.num_processes=N
dist.process_id=I`` (see :mod:`marlvault.distributed`); process 0 hosts the coordination
service on a free loopback port. Their output comes back line by line, each line prefixed with
``[I]``. When one process fails, the others are stopped (SIGTERM, then SIGKILL after a grace
period) and the launcher exits with the failed process's code; Ctrl-C is passed on to all.

For tests and for one machine with many cores or accelerators; on a cluster, start one
``marlvault train ...`` per task with the cluster's own launcher instead (SLURM's ``srun``, ...),
which ``jax.distributed`` detects.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from marlvault.errors import ConfigError

_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\d+")
_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(devices_per_process: int | None, environ: dict[str, str] | None = None
              ) -> dict[str, str]:
    """The environment of each process: ``devices_per_process`` forced CPU devices if given."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONUNBUFFERED"] = "1"
    if devices_per_process:
        flags = _DEVICE_FLAG.sub("", env.get("XLA_FLAGS", "")).strip()
        env["XLA_FLAGS"] = (f"{flags} --xla_force_host_platform_device_count="
                            f"{devices_per_process}").strip()  # fmt: skip
    return env


def commands(argv: Sequence[str], nproc: int, port: int) -> list[list[str]]:
    """One ``python -m marlvault ...`` command line per process."""
    dist = [f"dist.coordinator=127.0.0.1:{port}", f"dist.num_processes={nproc}"]
    return [[sys.executable, "-m", "marlvault", *argv, *dist, f"dist.process_id={i}"]
            for i in range(nproc)]


def _pump(index: int, stream, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sys.stdout.write(f"[{index}] {line}")
            sys.stdout.flush()


def launch(argv: Sequence[str], nproc: int, *, devices_per_process: int | None = None,
           port: int | None = None) -> int:
    """Runs ``marlvault ARGV`` as ``nproc`` processes of one run; returns the exit code (0 when
    all succeed, else the first failure's).

    Raises:
        ConfigError: ``nproc`` < 1, nothing to run, or ``argv`` sets ``dist.*`` itself.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc: expected >= 1, found {nproc}; fix: --nproc 2")
    if not argv:
        raise ConfigError("expected a command after --, e.g. marlvault launch --nproc 2 -- "
                          "train ippo")
    if any(a.startswith("dist.") for a in argv):
        raise ConfigError("launch sets dist.coordinator, dist.num_processes and dist.process_id "
                          "itself; fix: drop the dist.* overrides")
    env = child_env(devices_per_process)
    lock = threading.Lock()
    procs = []
    for i, cmd in enumerate(commands(argv, nproc, port or free_port())):
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)  # fmt: skip
        threading.Thread(target=_pump, args=(i, p.stdout, lock), daemon=True).start()
        procs.append(p)
    try:
        return _wait(procs)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        return _wait(procs, stopping=True)


def _wait(procs: list[subprocess.Popen], stopping: bool = False) -> int:
    """Waits for all; on the first failure stops the rest. Returns the exit code."""
    failed: int | None = None
    deadline = None
    while any(p.poll() is None for p in procs):
        codes = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if codes and failed is None:
            failed = codes[0]
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            deadline = time.monotonic() + _GRACE_S
        if (stopping or deadline) and deadline and time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.05)
    codes = [p.returncode for p in procs]
    return failed if failed is not None else next((c for c in codes if c), 0)
