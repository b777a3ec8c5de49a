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

Test modules run longest first (seconds per module in ``tests/durations.json``), so that
pytest-xdist's workers are not left with one long module at the end while the other waits.
Tests inside a module keep their order (module-scoped fixtures are built once per worker).
Modules not in the file run last, in collection order. Refresh the file after adding slow
modules: ``MARLVAULT_TEST_DURATIONS=write make test``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

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


_DURATIONS = Path(__file__).with_name("durations.json")
_WRITE_DURATIONS = os.environ.get("MARLVAULT_TEST_DURATIONS") == "write"
_measured: defaultdict[str, float] = defaultdict(float)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest modules first (see the module docstring); a stable sort keeps each module's order."""
    del config
    if not _DURATIONS.exists():
        return
    seconds = json.loads(_DURATIONS.read_text())
    items.sort(key=lambda item: -seconds.get(_module(item.nodeid), 0.0))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With ``MARLVAULT_TEST_DURATIONS=write``: adds up setup, call and teardown per module."""
    if _WRITE_DURATIONS:
        _measured[_module(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Removes this session's compilation cache (once, in the controlling process: pytest-xdist
    workers inherit the controller's environment and so share its cache); writes the module
    durations when asked to."""
    if hasattr(session.config, "workerinput"):
        return
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)
    if _WRITE_DURATIONS and exitstatus == 0 and _measured:
        ordered = dict(sorted(((m, round(t, 1)) for m, t in _measured.items()),
                              key=lambda kv: -kv[1]))
        _DURATIONS.write_text(json.dumps(ordered, indent=1) + "\n")


@pytest.fixture
def multi_device_env() -> dict[str, str]:
    """Environment variables for a subprocess that sees 4 forced CPU devices."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env
