"""``marlvault envs``: list the registered environments and scenarios with their sizes."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from marlvault.envs.registry import list_envs, scenario_info

envs_app = typer.Typer(
    help="List environments and scenarios (agents, obs/action/state sizes, time limit).",
    add_completion=False,
)


def envs_table(env_name: str | None = None) -> Table:
    """Builds the table of every scenario (of one env when ``env_name`` is given)."""
    registered = list_envs()
    if env_name is not None:
        # Unknown names raise EnvNotFoundError listing the valid ones.
        scenario_info(env_name, registered.get(env_name, [""])[0])
        registered = {env_name: registered[env_name]}
    table = Table(title="marlvault environments")
    for col in ("env", "scenario", "agents", "obs", "actions", "state", "time limit"):
        table.add_column(col, justify="left" if col in ("env", "scenario") else "right")
    for name, scenarios in registered.items():
        for scenario in scenarios:
            info = scenario_info(name, scenario)
            table.add_row(
                name,
                scenario,
                str(info["num_agents"]),
                str(info["obs_dim"]),
                str(info["action_dim"]),
                str(info["state_dim"]),
                str(info["time_limit"]),
            )
    return table


@envs_app.callback(invoke_without_command=True)
def envs(
    ctx: typer.Context,
    env: str = typer.Option(None, "--env", "-e", help="Only this environment (rware, lbf)."),
) -> None:
    """Print a table of environments, scenarios, agents, obs/action/state sizes, time limit."""
    if ctx.invoked_subcommand is None:
        Console(width=120).print(envs_table(env))


@envs_app.command("info")
def info(env_name: str, scenario: str) -> None:
    """Print one scenario's full config and sizes."""
    details = scenario_info(env_name, scenario)
    console = Console(width=120)
    for key, value in details.items():
        console.print(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    """Attach ``marlvault envs`` to the root app."""
    app.add_typer(envs_app, name="envs")
