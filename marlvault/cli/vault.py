"""``marlvault vault ...``: inspect (``info``) and check (``verify``) vaults.

The dataset tools of the same group (returns, subsample, combine, coverage, card) live in
:mod:`marlvault.cli.vault_tools` and are attached by :func:`register`.
"""

from __future__ import annotations

import json

import typer

from marlvault.errors import VaultCorruptError

vault_app = typer.Typer(help="Inspect, check and transform vaults.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the ``vault`` group (inspection here, dataset tools from ``vault_tools``)."""
    from marlvault.cli.vault_tools import register_tools

    register_tools(vault_app)
    app.add_typer(vault_app, name="vault")


def _human(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024 or unit == "TiB":
            return f"{num:.1f} {unit}" if unit != "B" else f"{int(num)} B"
        num /= 1024
    return str(num)


@vault_app.command("info")
def info(
    path: str = typer.Argument(..., help="Vault path or s3:// / gs:// URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Structure, rows, steps, episodes, size on disk, codec and creator of a vault."""
    from marlvault.vault.check import describe

    summary = describe(path)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{summary['path']}  ({summary['written_by']}, version {summary['version']})"
    )
    for col in ("key", "shape (per step)", "dtype"):
        table.add_column(col)
    for leaf in summary["structure"]:
        table.add_row(leaf["key"], str(tuple(leaf["shape"])), leaf["dtype"])
    console = Console(width=120)
    console.print(table)
    eps = summary["episodes"]
    ratio = summary["uncompressed_bytes"] / max(summary["size_on_disk"], 1)
    lines = [
        f"rows (B): {summary['rows']}   steps (T): {summary['steps']}   transitions: {summary['transitions']}",
        f"episodes: {eps['complete']} complete, {eps['incomplete']} incomplete"
        + (f", mean return {eps['mean_return']:.4g}" if eps["mean_return"] is not None else ""),
        f"size on disk: {_human(summary['size_on_disk'])} "
        f"(uncompressed {_human(summary['uncompressed_bytes'])}, ratio {ratio:.2f}x)",
        f"codec: {summary['codec']}   chunk steps: {summary['chunk_steps']}",
        f"creator: {summary['creator']}",
    ]
    pad = summary.get("padding")
    if pad:
        lines.insert(
            1,
            f"padded rows: {pad['padded_rows']} (valid steps "
            f"{pad['min_valid_steps']}..{pad['max_valid_steps']}; transitions exclude padding)",
        )
    ours = summary["marlvault"] or {}
    writers = ours.get("writers")
    if isinstance(writers, dict):
        per = writers.get("rows_per_process")
        lines.append(f"written by {writers.get('processes')} processes, {per} rows each "
                     f"(process i: rows [i*{per}, (i+1)*{per}))")  # fmt: skip
        progress = summary.get("writer_progress")
        if progress:
            lines.append(f"steps committed by each process: {progress} (readers see the "
                         f"{summary['steps']} that every row reached)")  # fmt: skip
    shown = {k: ours[k] for k in ("env_name", "scenario", "seed", "source") if k in ours}
    if shown:
        lines.append("recorded: " + "  ".join(f"{k}={v}" for k, v in shown.items()))
    space = ours.get("action_space")
    if isinstance(space, dict) and space.get("kind") == "continuous":
        lines.append(f"actions: continuous, {space.get('size')} components in "
                     f"[{space.get('low')}, {space.get('high')}]")  # fmt: skip
    elif isinstance(space, dict) and space.get("kind") == "discrete":
        lines.append(f"actions: discrete, {space.get('n')} choices")
    if ours:
        lines.append("full metadata (config, schema, versions, provenance): --json")
    for line in lines:
        console.print(line, highlight=False)


@vault_app.command("verify")
def verify(
    path: str = typer.Argument(..., help="Vault path or s3:// / gs:// URL."),
    steps_per_chunk: int = typer.Option(0, help="Steps read at a time (0: the vault's chunk)."),
) -> None:
    """Read every committed step; check the index, shapes, dtypes and the episode index."""
    from marlvault.vault.check import verify as run_verify

    report = run_verify(path, steps_per_chunk or None)
    if report.ok:
        typer.echo(f"ok: {report.path}: {report.steps_checked} steps checked")
        return
    for problem in report.problems:
        typer.echo(f"problem: {problem}", err=True)
    typer.echo(f"FAILED: {report.path}: {len(report.problems)} problem(s)", err=True)
    raise typer.Exit(code=VaultCorruptError.exit_code)
