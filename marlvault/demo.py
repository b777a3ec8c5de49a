"""``python -m marlvault.demo [KEY=VALUE ...]``: the project end to end, as a list of steps.

1. train IPPO on RobotWarehouse tiny-2ag for 3M environment steps while recording every step into
   a vault (``demo_out/vaults/rware/tiny-2ag.vlt/ippo-s42``);
2. describe the vault (``marlvault vault info``);
3. take the episodes of the last quarter of training (``marlvault vault subsample
   --update-range``) as the dataset of the final policy, and print return statistics of both;
4. train behaviour cloning offline on that dataset and evaluate it online (actions sampled
   from the cloned policy, as the recorded IPPO policy acted);
5. print a summary.

A few minutes on a 2-core CPU; everything goes under ``demo_out/``. Extra ``KEY=VALUE`` arguments
override the training config (e.g. ``system.total_timesteps=5e5`` for a quicker look).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path("demo_out")
"""Where the demo writes everything."""

VAULT = OUT / "vaults" / "rware" / "tiny-2ag.vlt" / "ippo-s42"
LATE = OUT / "vaults" / "rware" / "tiny-2ag.vlt" / "ippo-s42-last-quarter"

DEMO_TRAIN = [
    "env=rware",
    "scenario=tiny-2ag",
    "system.total_timesteps=3e6",
    "arch.num_envs=32",
    "arch.num_evaluation=10",
    f"logger.base_dir={OUT}",
    "logger.run_name=ippo_rware_tiny-2ag",
    f"record.path={VAULT}",
    "record.extras=update",
]

DEMO_BC = [
    f"vault={LATE}",
    "system.num_updates=3000",
    "system.lr=1e-3",
    "arch.num_evaluation=5",
    "arch.final_eval_episodes=64",
    "arch.eval_greedy=false",
    f"logger.base_dir={OUT}",
    "logger.run_name=bc_rware_tiny-2ag",
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
    """Step 1: Anakin IPPO on rware tiny-2ag, recording every step."""
    from marlvault import config
    from marlvault.online import ippo
    from marlvault.record.train import train_and_record

    for old in (VAULT, LATE):  # the demo starts afresh each time
        shutil.rmtree(old, ignore_errors=True)
    cfg = config.load(ippo.Config, "ippo", [*DEMO_TRAIN, *ctx.overrides])
    result, recorded = train_and_record(cfg)
    ctx.results["train"] = result
    ctx.results["updates"] = cfg.num_updates
    return [
        f"IPPO {cfg.env.env_name}/{cfg.env.scenario}: {result.env_steps:,} env steps in "
        f"{result.wall_time:.0f} s (compile {result.compile_time:.0f} s), "
        f"training SPS {result.sps:,.0f} while recording",
        f"  eval return (mean of agents' rewards summed over the episode): first "
        f"{result.history[0]['return_mean']:.3f} -> final {result.final_return_mean:.3f} "
        f"(best {result.best_return_mean:.3f})",
        f"  logs + marl-eval JSON: {result.run_dir}   checkpoints: {result.checkpoint_dir}",
        f"  vault: {recorded.path}: {recorded.num_rows} rows x {recorded.num_steps:,} steps; "
        f"the learner waited {recorded.wait_s:.2f} s for the writer",
    ]


def describe_vault(ctx: DemoContext) -> list[str]:
    """Step 2: what ``marlvault vault info`` prints."""
    from marlvault.cli.vault import info
    from marlvault.vault.check import describe

    info(str(VAULT), as_json=False)
    d = describe(str(VAULT))
    ratio = d["uncompressed_bytes"] / max(d["size_on_disk"], 1)
    return [
        f"vault: {d['transitions']:,} transitions, {d['episodes']['complete']:,} complete "
        f"episodes, {d['size_on_disk'] / 2**20:.1f} MiB on disk ({ratio:.0f}x compression)"
    ]


def late_dataset(ctx: DemoContext) -> list[str]:
    """Step 3: the last quarter of training as a dataset; returns of both vaults."""
    from marlvault.tools import SubsampleSpec, returns_report, subsample

    last = ctx.results["updates"] - 1
    spec = SubsampleSpec(update_range=(last - last // 4, last), seed=0, rows=8)
    subsample(str(VAULT), str(LATE), spec)
    stats = returns_report([str(VAULT), str(LATE)], plot=str(OUT / "returns.png"))
    lines = []
    for name, s in zip(("whole run", "last quarter"), stats, strict=True):
        lines.append(f"  {name}: {s.count:,} episodes, return mean {s.mean:.3f} ± {s.std:.3f} "
                     f"(min {s.min:.3f}, max {s.max:.3f})")  # fmt: skip
        print(lines[-1])
    ctx.results["late_return"] = stats[1].mean
    return ["dataset returns (plot: demo_out/returns.png):", *lines]


def train_bc(ctx: DemoContext) -> list[str]:
    """Step 4: behaviour cloning on the last-quarter dataset, evaluated online."""
    from marlvault.offline.train import train_offline

    s = train_offline("bc", DEMO_BC)
    ctx.results["bc"] = s
    frac = s["final_return_mean"] / ctx.results["late_return"] if ctx.results["late_return"] else 0
    return [
        f"BC on {LATE.name}: {s['num_updates']:,} updates ({s['updates_per_second']:.0f}/s), "
        f"final eval return {s['final_return_mean']:.3f} ± {s['final_return_std']:.3f} over "
        f"{s['final_episodes']} episodes = {frac:.0%} of the dataset's mean",
        f"  logs + checkpoints: {s['run_dir']}",
    ]


STEPS: list[DemoStep] = [
    DemoStep("train IPPO on rware tiny-2ag, recording a vault", train_ippo),
    DemoStep("describe the vault", describe_vault),
    DemoStep("dataset of the final policy: last quarter of training", late_dataset),
    DemoStep("behaviour cloning from the dataset, evaluated online", train_bc),
]
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
