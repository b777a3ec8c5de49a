"""``marlvault launch --nproc N -- train ippo ...``: one run as N local processes."""

from __future__ import annotations

import typer

_HELP = (
    "Run a marlvault command as N processes of one run on this machine (jax.distributed over "
    "loopback; CPU collectives through gloo). Every process logs with an [I] prefix; process 0 "
    "writes the summary, TensorBoard, JSON and checkpoints. On a cluster, start marlvault train "
    "once per task with the cluster's launcher (e.g. srun) instead: jax.distributed detects it.\n\n"
    "Example: marlvault launch --nproc 2 --devices-per-proc 2 -- train ippo arch.num_envs=64"
)


def launch_command(
    ctx: typer.Context,
    nproc: int = typer.Option(..., "--nproc", help="processes to start"),
    devices_per_proc: int = typer.Option(
        None, "--devices-per-proc", help="force this many CPU devices in each process"),
    port: int = typer.Option(None, "--port", help="coordinator port (default: a free one)"),
) -> None:
    """Run one marlvault command as several processes."""
    from marlvault.launch import launch

    code = launch(list(ctx.args), nproc, devices_per_process=devices_per_proc, port=port)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("launch", help=_HELP, short_help="Run a command as N local processes.",
                options_metavar="[OPTIONS] -- COMMAND [ARGS]...",
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        launch_command)  # fmt: skip
