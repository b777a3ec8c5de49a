"""Shared pytest setup.

The default session runs on the devices JAX finds (one CPU here). Tests that need several devices
start a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (fixture
``multi_device_env``), so that forcing devices never changes what the other tests see.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def multi_device_env() -> dict[str, str]:
    """Environment variables for a subprocess that sees 4 forced CPU devices."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env
