"""Shared pytest setup.

The default session runs on the devices JAX finds (one CPU here). Tests that need several devices
start a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (fixture
``multi_device_env``), so that forcing devices never changes what the other tests see.

Compilation is what most tests spend their time on, and many compile the same tiny learners
(in this process, in CLI subprocesses and in 4-device workers). JAX's persistent compilation cache
is pointed at a folder made fresh for each session (inherited by subprocesses through the
environment), so each program compiles once per session and no state survives between sessions.
Set ``JAX_COMPILATION_CACHE_DIR`` yourself to keep a cache across sessions.

The default (fast) session also lowers XLA's CPU backend optimisation level to 0
(``--xla_backend_optimization_level=0``, inherited by subprocesses): the programs are tiny, so
LLVM's optimisation passes cost far more than they save (a tiny MAPPO CLI run: 24 s -> 16 s).
Sessions that select ``-m slow`` (learning checks, measured figures) keep the default level, as
does any session run with ``MARLVAULT_TEST_XLA_OPT=1``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="marlvault-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
else:
    _CACHE = None


_FAST_XLA = "--xla_backend_optimization_level=0"


def pytest_configure(config: pytest.Config) -> None:
    """Lower XLA's backend optimisation for fast sessions (see the module docstring)."""
    markexpr = config.getoption("markexpr", "") or ""
    slow = "slow" in markexpr and "not slow" not in markexpr
    flags = os.environ.get("XLA_FLAGS", "")
    if slow or os.environ.get("MARLVAULT_TEST_XLA_OPT") == "1" or _FAST_XLA in flags:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {_FAST_XLA}".strip()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Removes this session's compilation cache (once, in the controlling process: pytest-xdist
    workers inherit the controller's environment and so share its cache)."""
    del exitstatus
    if _CACHE is not None and not hasattr(session.config, "workerinput"):
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture
def multi_device_env() -> dict[str, str]:
    """Environment variables for a subprocess that sees 4 forced CPU devices."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env
