"""Several processes, one run: ``jax.distributed`` set-up and what process 0 alone does.

A run is one process by default. It becomes process ``I`` of ``N`` when

- ``dist.coordinator=HOST:PORT dist.num_processes=N dist.process_id=I`` are given (what
  ``marlvault launch`` passes to the processes it starts), or
- it was started by a cluster launcher that ``jax.distributed`` detects by itself (SLURM with
  more than one task, Open MPI, and the other environments ``jax.distributed.initialize()``
  knows): then nothing needs to be set.

All processes run the same program on one global mesh of every process's devices
(:func:`marlvault.online.anakin.make_mesh`); on CPU the collectives between processes go through
gloo. Process 0 writes the console summary, TensorBoard, marl-eval JSON and checkpoints
(:func:`is_main`); every process logs its own progress.

:func:`initialize` must run before anything else touches JAX's devices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from marlvault.config import require, require_range
from marlvault.errors import ConfigError, DistributedError

_CLUSTER_SIZE_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
"""Variables by which common launchers announce several processes (any > 1: a cluster run)."""


@dataclass(frozen=True)
class DistConfig:
    """Multi-process runs (``marlvault launch`` sets these; a cluster launcher needs none)."""

    coordinator: str | None = None
    """``HOST:PORT`` of process 0's coordination service; ``None``: one process, or detected
    from the cluster launcher's environment."""
    num_processes: int = 1
    """Processes in the run."""
    process_id: int = 0
    """This process's index, ``0 .. num_processes - 1``."""
    timeout_s: int = 60
    """Seconds to wait for every process to join before failing; also how long a process that
    stopped answering (killed, lost) goes unnoticed before the others stop."""

    def __post_init__(self) -> None:
        require_range("dist", self, "num_processes", lo=1, hi=4096)
        require_range("dist", self, "timeout_s", lo=1, hi=3600)
        require("dist.process_id", self.process_id, 0 <= self.process_id < self.num_processes,
                f"an index in [0, {self.num_processes - 1}]", "dist.process_id=0")
        if self.coordinator is not None:
            host, sep, port = self.coordinator.rpartition(":")
            require("dist.coordinator", self.coordinator, bool(sep and host and port.isdigit()),
                    "HOST:PORT", "dist.coordinator=10.0.0.1:12355")
        elif self.num_processes > 1:
            raise ConfigError(
                f"dist.num_processes={self.num_processes} needs dist.coordinator=HOST:PORT "
                "(process 0's address); fix: add it, or start the run with marlvault launch")


def config_from_overrides(overrides: list[str]) -> DistConfig:
    """The ``dist`` section from ``dist.KEY=VALUE`` overrides alone, so that :func:`initialize`
    can run before the rest of the config is resolved (which may touch the devices)."""
    import dataclasses
    import typing

    from marlvault.config import coerce

    hints = typing.get_type_hints(DistConfig)
    names = {f.name for f in dataclasses.fields(DistConfig)}
    values = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.startswith("dist.") and key[5:] in names:
            values[key[5:]] = coerce(key, value, hints[key[5:]])
    return DistConfig(**values)


def cluster_detected(environ: dict[str, str] | None = None) -> bool:
    """A cluster launcher started this process as one of several."""
    env = os.environ if environ is None else environ
    return any(env.get(v, "1").isdigit() and int(env.get(v, "1")) > 1 for v in _CLUSTER_SIZE_VARS)


def initialize(dist: DistConfig) -> bool:
    """Joins the run's other processes, if there are any; returns whether it did.

    Raises:
        DistributedError: the coordinator could not be reached, or not every process joined,
            within ``dist.timeout_s`` (the message names the address and the fix).
    """
    explicit = dist.coordinator is not None
    if not explicit and not cluster_detected():
        return False
    import jax

    if jax.distributed.is_initialized():
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # a process that stops answering (killed, a lost node) ends the others within timeout_s
    kwargs = {"initialization_timeout": dist.timeout_s, "heartbeat_timeout_seconds": dist.timeout_s}
    if explicit:
        kwargs.update(coordinator_address=dist.coordinator, num_processes=dist.num_processes,
                      process_id=dist.process_id)  # fmt: skip
    if explicit and dist.process_id != 0:
        wait_for_coordinator(dist.coordinator, dist.timeout_s)
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as err:  # jax raises plain RuntimeError/ValueError/XlaRuntimeError here
        where = dist.coordinator or "the coordinator the cluster launcher announced"
        raise DistributedError(
            f"dist.coordinator {where}: expected {dist.num_processes} processes to join within "
            f"{dist.timeout_s} s, failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "fix: start process 0 first and check HOST:PORT is reachable from every process "
            "(same dist.coordinator everywhere, a free port), or raise dist.timeout_s") from None
    return True


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Returns once ``HOST:PORT`` accepts a TCP connection; fails after ``timeout_s``.

    jax's own client aborts the whole process (no exception, no message of ours) when the
    coordinator never answers, so processes other than 0 check first.

    Raises:
        DistributedError: naming the address, the wait and the fix.
    """
    import socket
    import time

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError as err:
            last = err.strerror or type(err).__name__
            time.sleep(0.2)
    raise DistributedError(
        f"dist.coordinator {address}: expected process 0's coordination service to answer "
        f"within dist.timeout_s={timeout_s:g} s, found no answer ({last}); fix: start process 0 "
        "(it hosts the service) with the same dist.coordinator, check the host and port are "
        "reachable from here, or raise dist.timeout_s")


def process_index() -> int:
    """This process's index (0 when JAX runs one process)."""
    import jax

    return jax.process_index()


def is_main() -> bool:
    """This process writes the run's files (console summary, TensorBoard, JSON, checkpoints)."""
    return process_index() == 0
