"""``marlvault train ippo|mappo|rec-ippo|rec-mappo [KEY=VALUE ...]``: online training from typed
config overrides."""

from __future__ import annotations

import math

import typer

from marlvault.cli._help import keys_help_command

train_app = typer.Typer(
    help="Train an online MARL system (Anakin IPPO/MAPPO, feed-forward or recurrent) on a JAX "
    "environment.",
    no_args_is_help=True,
    add_completion=False,
)

_OVERRIDES_HELP = (
    "Config overrides KEY=VALUE, e.g. env=lbf scenario=8x8-2p-2f-coop arch.num_envs=64"
)


def _config_class(recurrent: bool) -> type:
    from marlvault.online import ippo, rec_ippo

    return rec_ippo.Config if recurrent else ippo.Config


def _keys_help(recurrent: bool = False) -> str:
    from marlvault.config import env_presets, keys_table

    return (
        "  env=NAME and scenario=NAME are shortcuts for env.env_name and env.scenario.\n"
        f"{keys_table(_config_class(recurrent))}\n\nEnvironment presets: {', '.join(env_presets())}"
    )


def _run(overrides: list[str], extra: list[str], recurrent: bool = False) -> None:
    from marlvault import config, distributed
    from marlvault.record.train import train_and_record

    preset = "rec_ippo" if recurrent else "ippo"
    distributed.initialize(distributed.config_from_overrides(overrides))  # before any JAX call
    cfg = config.load(_config_class(recurrent), preset, [*extra, *overrides])
    result, recorded = train_and_record(cfg)
    if not distributed.is_main():
        return
    typer.echo(
        f"\n{result.algorithm} {cfg.env.env_name}/{cfg.env.scenario} done: "
        f"final eval return {result.final_return_mean:.3f} ± {result.final_return_std:.3f} "
        f"(best {result.best_return_mean:.3f})"
        + ("" if math.isnan(result.final_win_rate) else f", win rate {result.final_win_rate:.2f}")
        + "\n"
        f"env steps {result.env_steps:,}  wall time {result.wall_time:.1f} s "
        f"(compile {result.compile_time:.1f} s)  training SPS {result.sps:,.0f}\n"
        f"logs: {result.run_dir}"
        + (f"\ncheckpoints: {result.checkpoint_dir}" if result.checkpoint_dir else "")
    )
    if result.interrupted:
        typer.echo("interrupted: stopped early; everything produced so far was saved")
    if recorded is not None:
        _print_vault(recorded.path)


def _print_vault(path: str) -> None:
    from marlvault.vault import Vault

    with Vault.open(path) as vault:
        eps = vault.episodes
        complete = int(eps["complete"].sum())
        typer.echo(
            f"vault: {path}\n"
            f"  {vault.num_rows} rows x {vault.num_steps:,} steps "
            f"({int(vault.row_lengths.sum()):,} transitions), {complete:,} complete "
            f"episodes, {len(eps) - complete} incomplete, keys: {', '.join(vault.keys)}\n"
            f"  inspect: marlvault vault info {path}"
        )


def ippo_command(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES_HELP, show_default=False),
) -> None:
    """Independent PPO: each agent's critic sees its own observation."""
    _run(overrides or [], [])


def mappo_command(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES_HELP, show_default=False),
) -> None:
    """Multi-agent PPO: IPPO with a centralised critic on the global state."""
    _run(overrides or [], ["system.centralised_critic=true"])


def rec_ippo_command(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES_HELP, show_default=False),
) -> None:
    """Recurrent IPPO: GRU actor and critic, truncated BPTT over each rollout."""
    _run(overrides or [], [], recurrent=True)


def rec_mappo_command(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES_HELP, show_default=False),
) -> None:
    """Recurrent MAPPO: recurrent IPPO with a centralised (GRU) critic on the global state."""
    _run(overrides or [], ["system.centralised_critic=true"], recurrent=True)


def register(app: typer.Typer) -> None:
    """Attach ``train`` to the root command."""
    ff_help, rec_help = keys_help_command(_keys_help), keys_help_command(lambda: _keys_help(True))
    train_app.command("ippo", cls=ff_help)(ippo_command)
    train_app.command("mappo", cls=ff_help)(mappo_command)
    train_app.command("rec-ippo", cls=rec_help)(rec_ippo_command)
    train_app.command("rec-mappo", cls=rec_help)(rec_mappo_command)
    app.add_typer(train_app, name="train")
