"""``marlvault offline train bc|iql-cql|qmix-cql vault=PATH [KEY=VALUE ...]``.

A thin layer over :func:`marlvault.offline.train.train_offline`: parse overrides into the run
config, train, print the summary. Every :class:`MarlvaultError` becomes one line on stderr and
its class's exit code.
"""

from __future__ import annotations

import typer

from marlvault.cli._errors import user_errors

offline_app = typer.Typer(
    help="Train offline MARL (BC, IQL+CQL, QMIX+CQL) from a vault and evaluate it online.",
    no_args_is_help=True,
    add_completion=False,
)
train_app = typer.Typer(
    help="Train an offline algorithm on a vault.", no_args_is_help=True, add_completion=False
)

_HELP = ("vault=PATH and config overrides KEY=VALUE, e.g. vault=vaults/lbf.vlt system.num_updates="
         "5000 system.recurrent=true env=lbf scenario=8x8-2p-2f-coop")


def _run(algo: str, overrides: list[str]) -> None:
    from marlvault.offline.train import train_offline

    with user_errors():
        s = train_offline(algo, overrides)
    typer.echo(
        f"\n{s['algorithm']} {s['env_name']}/{s['scenario']} on {s['vault']} "
        f"({s['dataset_mode']}, dataset mean return {s['dataset_return_mean']:.3f}) done:\n"
        f"final eval return {s['final_return_mean']:.3f} ± {s['final_return_std']:.3f} over "
        f"{s['final_episodes']} episodes (best params from update {s['best_step']:,})\n"
        f"updates {s['num_updates']:,}  updates/s {s['updates_per_second']:,.1f}\n"
        f"logs: {s['run_dir']}"
    )


def bc_command(overrides: list[str] = typer.Argument(None, help=_HELP, show_default=False)) -> None:
    """Behaviour cloning (system.recurrent=true for a GRU policy)."""
    _run("bc", overrides or [])


def iql_cql_command(
    overrides: list[str] = typer.Argument(None, help=_HELP, show_default=False),
) -> None:
    """Recurrent independent Q-learning with CQL (double Q, target network)."""
    _run("iql-cql", overrides or [])


def qmix_cql_command(
    overrides: list[str] = typer.Argument(None, help=_HELP, show_default=False),
) -> None:
    """Recurrent QMIX with CQL (needs infos.state in the vault)."""
    _run("qmix-cql", overrides or [])


def register(app: typer.Typer) -> None:
    """Attach ``offline train ...`` to the root command."""
    train_app.command("bc")(bc_command)
    train_app.command("iql-cql")(iql_cql_command)
    train_app.command("qmix-cql")(qmix_cql_command)
    offline_app.add_typer(train_app, name="train")
    app.add_typer(offline_app, name="offline")
