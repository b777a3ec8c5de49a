"""``marlvault record CHECKPOINT [KEY=VALUE ...]``: make a dataset by rolling out a saved policy."""

from __future__ import annotations

import dataclasses
import typing

import typer

from marlvault.cli._help import keys_help_command
from marlvault.errors import ConfigError

_HELP = (
    "Roll out a saved policy (greedy, sampled or epsilon-greedy) and record complete episodes "
    "into a vault: the way published offline MARL datasets are made. Checkpoints from one "
    "training run (results/<run>/checkpoints/best, last) give datasets of different quality.\n\n"
    "Example: marlvault record results/ippo_rware_tiny-2ag_seed42/checkpoints/best "
    "episodes=200 epsilon=0.05 path=vaults/rware/tiny-2ag.vlt/Good"
)


def parse_rollout_config(checkpoint: str, overrides: list[str]):
    """``KEY=VALUE`` strings → :class:`RolloutConfig` (unknown keys list the valid ones)."""
    from marlvault.config import coerce
    from marlvault.record.rollout import RolloutConfig

    hints = typing.get_type_hints(RolloutConfig)
    valid = [f.name for f in dataclasses.fields(RolloutConfig) if f.name != "checkpoint"]
    values: dict[str, typing.Any] = {}
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"argument {arg!r}: expected KEY=VALUE, e.g. episodes=100")
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid)}")
        values[key] = coerce(key, value, hints[key])
    return RolloutConfig(checkpoint=checkpoint, **values)


def record_command(
    checkpoint: str = typer.Argument(..., help="checkpoint folder (best/last), or a run folder"),
    overrides: list[str] = typer.Argument(None, help="KEY=VALUE options (see above)"),
) -> None:
    """Record episodes of a saved policy into a vault."""
    from marlvault.record.rollout import record_policy

    cfg = parse_rollout_config(checkpoint, overrides or [])
    typer.echo(f"recording {cfg.episodes} episodes ({cfg.mode}, epsilon={cfg.epsilon:g}) ...")
    result = record_policy(cfg)
    typer.echo(
        f"vault: {result.path}\n"
        f"episodes: {result.episodes} complete, return {result.return_mean:.3f} "
        f"± {result.return_std:.3f}\n"
        f"rows x steps: {result.stats.num_rows} x {result.stats.num_steps}\n"
        f"inspect: marlvault vault info {result.path}"
    )


def register(app: typer.Typer) -> None:
    short = "Roll out a saved policy into a vault (make an offline dataset)."
    app.command("record", help=_HELP, short_help=short, cls=keys_help_command(_keys_help))(
        record_command
    )


def _keys_help() -> str:
    from marlvault.config import keys_table
    from marlvault.record.rollout import RolloutConfig

    return keys_table(RolloutConfig, skip=("checkpoint",))
