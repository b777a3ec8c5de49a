"""``marlvault offline train ALGO vault=PATH [KEY=VALUE ...]``.

A thin layer over :func:`marlvault.offline.train.train_offline`: parse overrides into the run
config, train, print the summary. The ``ALGO`` commands come from the algorithm registry
(``marlvault.offline.train.ALGORITHMS``) when ``offline train`` is used, so a new algorithm needs
no change here and importing the CLI does not import JAX.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from marlvault.cli._help import keys_help_command

_HELP = ("vault=PATH and config overrides KEY=VALUE, e.g. vault=vaults/lbf.vlt system.num_updates="
         "5000 system.recurrent=true env=lbf scenario=8x8-2p-2f-coop")


def _run(algo: str, overrides: list[str]) -> None:
    """Train, stopping after the current block on the first Ctrl-C / SIGTERM (exit code 0, like
    ``marlvault train``: what was produced is saved); a second signal stops at once (130)."""
    from marlvault import distributed
    from marlvault.offline.train import load_config, train_offline
    from marlvault.record.signals import graceful_stop

    config = load_config(algo, overrides)  # config errors before the handlers are installed
    then = "finishing the current block of updates, then saving the logs and checkpoints"
    with graceful_stop(then) as stop:
        s = train_offline(algo, config, should_stop=stop)
    if not distributed.is_main():
        return
    if s["interrupted"]:
        typer.echo(
            f"\ninterrupted after update {s['num_updates']:,}: stopped early, no final "
            f"evaluation; best params (update {s['best_step']:,}, eval return "
            f"{s['best_eval_return']:.3f}) and logs saved\nlogs: {s['run_dir']}"
        )
        return
    typer.echo(
        f"\n{s['algorithm']} {s['env_name']}/{s['scenario']} on {s['vault']} "
        f"({s['dataset_mode']}, {s['actions']} actions, dataset mean return "
        f"{s['dataset_return_mean']:.3f}) done:\n"
        f"final eval return {s['final_return_mean']:.3f} ± {s['final_return_std']:.3f} over "
        f"{s['final_episodes']} episodes (best params from update {s['best_step']:,})\n"
        f"updates {s['num_updates']:,}  updates/s {s['updates_per_second']:,.1f}\n"
        f"logs: {s['run_dir']}"
    )


def _keys_help(algo: str) -> str:
    from marlvault.config import keys_table
    from marlvault.offline.train import run_config_class

    return "  vault=PATH is a shortcut for data.vault.\n" + keys_table(run_config_class(algo))


def _algorithm_command(name: str, summary: str) -> Any:
    """The click command of one registered algorithm."""
    sub = typer.Typer(add_completion=False)

    def command(
        overrides: list[str] = typer.Argument(None, help=_HELP, show_default=False),
    ) -> None:
        _run(name, overrides or [])

    command.__doc__ = summary
    sub.command(name, cls=keys_help_command(lambda: _keys_help(name)))(command)
    return typer.main.get_command(sub)


class AlgorithmsGroup(TyperGroup):
    """``offline train``: one subcommand per entry of the algorithm registry, built on demand."""

    def list_commands(self, ctx: Any) -> list[str]:
        from marlvault.offline.train import ALGORITHMS

        return list(ALGORITHMS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        import sys

        from marlvault import distributed

        # join the run's other processes before the registry's imports start JAX's backend
        distributed.initialize(distributed.config_from_overrides(sys.argv[1:]))
        from marlvault.offline.train import ALGORITHMS

        entry = ALGORITHMS.get(cmd_name)
        return None if entry is None else _algorithm_command(entry.name, entry.summary)


offline_app = typer.Typer(
    help="Train offline MARL (OG-MARL's baselines: BC, IQL+CQL, QMIX+CQL, IQL+BCQ, QMIX+BCQ, "
    "MAICQ, IDDPG+BC, IDDPG+CQL, MADDPG+CQL, OMAR) from a vault and evaluate it online.",
    no_args_is_help=True,
    add_completion=False,
)
train_app = typer.Typer(
    cls=AlgorithmsGroup,
    help="Train an offline algorithm on a vault.",
    no_args_is_help=True,
    add_completion=False,
)


def register(app: typer.Typer) -> None:
    """Attach ``offline train ...`` to the root command."""
    offline_app.add_typer(train_app, name="train")
    app.add_typer(offline_app, name="offline")
