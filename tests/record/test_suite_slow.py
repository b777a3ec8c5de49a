"""Measured dataset suites (``-m slow``): ``marlvault dataset build`` for RWARE tiny-2ag (IPPO) and
SMAX 3m (recurrent IPPO), 1000 episodes per level. Good must sit above Medium above Poor with
non-overlapping 95 % intervals of the mean return.

Run ``MARLVAULT_SUITE_DIR=suites pytest -m slow tests/record/test_suite_slow.py -s`` to keep the
suites (the cards under ``docs/datasets/`` come from such a run); otherwise they are built in a
temporary folder.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from marlvault.record.suite import SuiteConfig, build_suite

SUITES = {
    "rware-tiny-2ag": SuiteConfig(
        "rware", "tiny-2ag", out="", system="ippo",
        overrides=("system.total_timesteps=3e6", "arch.num_evaluation=20",
                   "logger.console=false")),
    "smax-3m": SuiteConfig(
        "smax", "3m", out="", system="rec-ippo",
        overrides=("system.total_timesteps=3e6", "arch.num_evaluation=20", "arch.num_envs=128",
                   "system.num_minibatches=4", "system.lr=0.004", "system.clip_eps=0.05",
                   "system.max_grad_norm=0.25", "system.decay_lr=true", "logger.console=false")),
}  # fmt: skip
"""SMAX 3m uses JaxMARL's recurrent IPPO settings (as ``tests/online/test_learning.py``)."""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SUITES))
def test_suite_levels_are_ordered(name, tmp_path):
    base = Path(os.environ.get("MARLVAULT_SUITE_DIR", tmp_path))
    cfg = dataclasses.replace(SUITES[name], out=str(base / name))
    t0 = time.perf_counter()
    result = build_suite(cfg)
    print(f"\n{name}: built in {time.perf_counter() - t0:.0f} s")
    stats = {lv: result.levels[lv]["stats"] for lv in ("good", "medium", "poor")}
    for lv, s in stats.items():
        print(f"  {lv:<7} {s['complete']} episodes, {s['return_mean']:.3f} ± "
              f"{s['return_ci95']:.3f}")
        assert s["complete"] >= cfg.episodes and s["rows"] == 1
    lo = {lv: s["return_mean"] - s["return_ci95"] for lv, s in stats.items()}
    hi = {lv: s["return_mean"] + s["return_ci95"] for lv, s in stats.items()}
    assert lo["good"] > hi["medium"] and lo["medium"] > hi["poor"]
