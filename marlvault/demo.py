"""``python -m marlvault.demo [KEY=VALUE ...]``: the project end to end, as a list of steps.

Step 1 trains IPPO on RobotWarehouse tiny-2ag for 2M environment steps (a few minutes on a
2-core CPU) and writes logs and checkpoints under ``demo_out/``. Later steps (recording a vault,
offline training from it) append themselves to :data:`STEPS`. Extra ``KEY=VALUE`` arguments
override the training config (e.g. ``system.total_timesteps=5e5`` for a quicker look).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path("demo_out")
"""Where the demo writes everything."""

DEMO_TRAIN = [
    "env=rware",
    "scenario=tiny-2ag",
    "system.total_timesteps=2e6",
    "arch.num_envs=32",
    "arch.num_evaluation=10",
    f"logger.base_dir={OUT}",
    "logger.run_name=ippo_rware_tiny-2ag",
]


@dataclass
class DemoContext:
    """What the steps share: output folder, config overrides and each step's results."""

    out: Path
    overrides: list[str]
    results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoStep:
    name: str
    run: Callable[[DemoContext], list[str]]
    """Runs the step and returns the summary lines to print at the end."""


def train_ippo(ctx: DemoContext) -> list[str]:
    """Step 1: Anakin IPPO on rware tiny-2ag."""
    from marlvault import config
    from marlvault.online import ippo, run

    cfg = config.load(ippo.Config, "ippo", [*DEMO_TRAIN, *ctx.overrides])
    result = run.train(cfg)
    ctx.results["train"] = result
    return [
        f"IPPO {cfg.env.env_name}/{cfg.env.scenario}: {result.env_steps:,} env steps in "
        f"{result.wall_time:.0f} s (compile {result.compile_time:.0f} s), "
        f"training SPS {result.sps:,.0f}",
        f"  eval return (mean of agents' rewards summed over the episode): first "
        f"{result.history[0]['return_mean']:.3f} -> final {result.final_return_mean:.3f} "
        f"(best {result.best_return_mean:.3f})",
        f"  logs + marl-eval JSON: {result.run_dir}   checkpoints: {result.checkpoint_dir}",
    ]


STEPS: list[DemoStep] = [DemoStep("train IPPO on rware tiny-2ag", train_ippo)]
"""The demo's steps, in order."""


def main(argv: list[str] | None = None) -> int:
    """Run every step, then print the collected summary."""
    ctx = DemoContext(out=OUT, overrides=list(sys.argv[1:] if argv is None else argv))
    ctx.out.mkdir(parents=True, exist_ok=True)
    summary: list[str] = []
    start = time.perf_counter()
    for i, step in enumerate(STEPS, 1):
        print(f"\n== step {i}/{len(STEPS)}: {step.name}", flush=True)
        summary += step.run(ctx)
    print(f"\n== marlvault demo summary ({time.perf_counter() - start:.0f} s)")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    from marlvault.errors import MarlvaultError

    try:
        sys.exit(main())
    except MarlvaultError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
