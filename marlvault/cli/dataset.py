"""``marlvault dataset build ENV SCENARIO --out DIR``: a Good/Medium/Poor suite in one command."""

from __future__ import annotations

import typer

dataset_app = typer.Typer(
    help="Benchmark dataset suites (OG-MARL's Good / Medium / Poor levels) in one command.",
    no_args_is_help=True,
    add_completion=False,
)

_BUILD_HELP = (
    "Train an online system (or reuse a run's kept checkpoints), pick one policy per level by "
    "its scored return, record complete episodes of each level into a one-row vault in OG-MARL's "
    "layout OUT/<source>/<env>/<scenario>.vlt/<Level>, and write a suite card (OUT/README.md, "
    "OUT/returns.png). Levels: good = the best checkpoint; medium and poor = the checkpoints "
    "scoring nearest to random + 0.5 and + 0.1 of the best's gain over the uniform random "
    "policy; random = the uniform random policy. Stopped builds continue when the same command "
    "is run again: finished stages and levels are kept and verified (OUT/suite.json).\n\n"
    "Example: marlvault dataset build rware tiny-2ag --out datasets/rware-tiny-2ag "
    "system.total_timesteps=2e6"
)


def _levels(text: str) -> tuple[str, ...]:
    return tuple(x.strip().lower() for x in text.split(",") if x.strip())


def build_command(
    env: str = typer.Argument(..., help="environment (marlvault envs lists them)"),
    scenario: str = typer.Argument(..., help="scenario of that environment"),
    out: str = typer.Option(..., "--out", help="suite folder: new, empty, or a suite to continue"),
    system: str = typer.Option("ippo", "--system", help="ippo, mappo, rec-ippo or rec-mappo"),
    levels: str = typer.Option("good,medium,poor", "--levels",
                               help="comma-separated, among good, medium, poor, random"),
    episodes: int = typer.Option(1000, "--episodes", help="complete episodes per level"),
    from_run: str = typer.Option(None, "--from-run",
                                 help="reuse this run folder's checkpoints/step_* (trained with "
                                      "logger.keep_checkpoints=true) instead of training"),
    eval_episodes: int = typer.Option(64, "--eval-episodes",
                                      help="episodes that score each candidate policy"),
    mode: str = typer.Option("sampled", "--mode",
                             help="sampled (from the policy) or greedy, when scoring and recording"),
    epsilon: float = typer.Option(0.0, "--epsilon",
                                  help="probability of a uniformly random action per step"),
    seed: int = typer.Option(0, "--seed", help="seed of training, scoring and recording"),
    source: str = typer.Option("marlvault", "--source",
                               help="first folder of the layout <source>/<env>/<scenario>.vlt"),
    layout: str = typer.Option("og-marl", "--layout",
                               help="og-marl (one row of complete episodes, no padding) or rows "
                                    "(one row per parallel environment, as recorded)"),
    overrides: list[str] = typer.Argument(
        None, help="training overrides KEY=VALUE (see marlvault train ippo --help)",
        show_default=False),
) -> None:
    """Build (or continue) a dataset suite."""
    from marlvault.record.suite import SuiteConfig, build_suite

    cfg = SuiteConfig(env=env, scenario=scenario, out=out, system=system,
                      levels=_levels(levels), episodes=episodes, from_run=from_run,
                      eval_episodes=eval_episodes, mode=mode, epsilon=epsilon, seed=seed,
                      source=source, layout=layout,
                      overrides=tuple(overrides or ()))  # fmt: skip
    result = build_suite(cfg, log=typer.echo)
    typer.echo("\nlevel    episodes  mean return ± 95% CI   vault")
    for level, entry in result.levels.items():
        s = entry["stats"]
        typer.echo(f"{level:<8} {s['complete']:>8,}  {s['return_mean']:>9.3f} ± "
                   f"{s['return_ci95']:<9.3f}  {cfg.root / entry['vault']}")
    typer.echo(f"card: {cfg.root / 'README.md'}")


def register(app: typer.Typer) -> None:
    """Attach ``dataset`` to the root command."""
    dataset_app.command("build", help=_BUILD_HELP,
                        short_help="Train, pick levels, record them, write a suite card.")(
        build_command)  # fmt: skip
    app.add_typer(dataset_app, name="dataset")
