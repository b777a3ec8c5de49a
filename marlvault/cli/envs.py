"""``marlvault envs``: list the registered environments and scenarios with their sizes."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

envs_app = typer.Typer(
    help="List environments and scenarios (agents, obs/action/state sizes, time limit).",
    add_completion=False,
)


def _actions(info: dict) -> str:
    """The action space in a cell: "discrete 5" (choices) or "continuous 2" (components)."""
    return f"{'continuous' if info['continuous'] else 'discrete'} {info['action_dim']}"


def envs_table(env_name: str | None = None) -> Table:
    """Builds the table of every scenario (of one env when ``env_name`` is given).

    Envs whose optional package is missing are still listed (with their sizes when they can be
    computed without the package) and their note says which extra to install.
    """
    from marlvault.envs.registry import env_scenarios, list_envs, missing_extra, scenario_info
    from marlvault.errors import EnvDependencyError

    if env_name is None:
        registered = list_envs()
    else:  # unknown names raise EnvNotFoundError listing the valid ones
        registered = {env_name: env_scenarios(env_name)}
    table = Table(title="marlvault environments")
    for col in ("env", "scenario", "agents", "obs", "actions", "state", "time limit", "note"):
        table.add_column(col, justify="left" if col in ("env", "scenario", "note") else "right")
    for name, scenarios in registered.items():
        extra = missing_extra(name)
        note = escape(f"pip install 'marlvault[{extra}]'") if extra else ""  # [..] is markup
        for scenario in scenarios:
            try:
                info = scenario_info(name, scenario)
            except EnvDependencyError:
                table.add_row(name, scenario, "-", "-", "-", "-", "-", note or "not installed")
                continue
            cells = [str(info["num_agents"]), str(info["obs_dim"]), _actions(info)]
            cells += [str(info["state_dim"]), str(info["time_limit"])]
            table.add_row(name, scenario, *cells, note)
    return table


@envs_app.callback(invoke_without_command=True)
def envs(
    ctx: typer.Context,
    env: str = typer.Option(
        None, "--env", "-e", help="Only this environment (rware, lbf, matrax, smax, mpe, mabrax)."
    ),
) -> None:
    """Print a table of environments, scenarios, agents, obs/action/state sizes, time limit."""
    if ctx.invoked_subcommand is None:
        Console(width=120).print(envs_table(env))


@envs_app.command("info")
def info(env_name: str, scenario: str) -> None:
    """Print one scenario's full config and sizes."""
    from marlvault.envs.registry import scenario_info

    details = scenario_info(env_name, scenario)
    console = Console(width=120)
    for key, value in details.items():
        console.print(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    """Attach ``marlvault envs`` to the root app."""
    app.add_typer(envs_app, name="envs")
