"""``marlvault vault returns|subsample|combine|coverage|card|export``: dataset tools on any vault.

Thin commands over :mod:`marlvault.tools`; errors are :class:`~marlvault.errors.MarlvaultError`
subclasses that the root command turns into one line and the class's exit code.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from marlvault.errors import ConfigError


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--{what}: expected comma-separated numbers, found {text!r}") from None


def _pair(text: str | None, what: str, cast: type = float) -> tuple | None:
    """Parse ``"LO:HI"`` (either side may be empty for an open end)."""
    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    if not sep:
        raise ConfigError(f"--{what}: expected LO:HI (e.g. 10:20 or 10:), found {text!r}")
    inf = float("inf") if cast is float else 2**62
    try:
        return (cast(lo) if lo.strip() else -inf, cast(hi) if hi.strip() else inf)
    except ValueError:
        raise ConfigError(f"--{what}: expected numbers in LO:HI, found {text!r}") from None


def returns_cmd(
    paths: list[str] = typer.Argument(..., help="One or more vault paths/URLs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plot: Path = typer.Option(None, "--plot", help="Write a histogram + violin PNG here."),
) -> None:
    """Episode return statistics (complete episodes; team return = sum of agent-mean reward)."""
    from marlvault.tools.returns import returns_report

    stats = returns_report(paths, plot=plot, progress=not as_json)
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in stats], indent=2))
        return
    table = Table(title="episode returns (complete episodes)")
    cols = ("path", "count", "incomplete", "mean", "std", "min", "median", "max", "iqr")
    for col in cols:
        table.add_column(col, justify="left" if col == "path" else "right")
    for s in stats:
        d = s.to_dict()
        table.add_row(*("-" if d[c] is None else str(d[c]) if c in ("path", "count", "incomplete")
                        else f"{d[c]:.4g}" for c in cols))
    Console(width=140).print(table)
    if plot is not None:
        typer.echo(f"plot written to {plot}")


def subsample_cmd(
    src: str = typer.Argument(..., help="Source vault."),
    dst: str = typer.Argument(..., help="New vault to write (must not exist)."),
    episodes: int = typer.Option(None, "--episodes", "-n", help="Draw exactly N episodes."),
    transitions: int = typer.Option(None, "--transitions", "-t",
                                    help="Draw whole episodes until at least T steps."),
    return_range: str = typer.Option(None, "--return-range", help="Keep returns in LO:HI."),
    target_edges: str = typer.Option(None, "--target-edges",
                                     help="Bin edges of a target return distribution: e0,e1,..."),
    target_counts: str = typer.Option(None, "--target-counts",
                                      help="Episodes per target bin: c0,c1,..."),
    update_range: str = typer.Option(None, "--update-range",
                                     help="Keep episodes whose update index is in LO:HI."),
    update_key: str = typer.Option("infos.update", "--update-key", help="Update index key."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the draw."),
    rows: int = typer.Option(1, "--rows", help="Rows of the output vault (--layout rows)."),
    layout: str = typer.Option(
        "rows", "--layout",
        help="rows (default): the chosen episodes packed into --rows rows, shorter rows "
             "zero-padded (row_lengths in the metadata). og-marl: one row, the chosen episodes "
             "end to end (by end step, then row), no padding, as OG-MARL's code reads a vault; "
             "needs --rows 1. See docs/TOOLS.md, \"export\"."),
) -> None:
    """Write an episode-aligned subsample of SRC into a new vault DST.

    \b
    marlvault vault subsample SRC DST --episodes 500 --seed 1
    marlvault vault subsample SRC vaults/x.vlt/Good --episodes 500 --layout og-marl   # for OG-MARL
    """
    from marlvault.tools.subsample import SubsampleSpec, subsample

    counts = _floats(target_counts, "target-counts")
    spec = SubsampleSpec(
        episodes=episodes, transitions=transitions,
        return_range=_pair(return_range, "return-range"),
        target_edges=_floats(target_edges, "target-edges"),
        target_counts=None if counts is None else tuple(int(c) for c in counts),
        update_range=_pair(update_range, "update-range", int), update_key=update_key,
        seed=seed, rows=rows,
    )
    prov = subsample(src, dst, spec, progress=True, layout=layout)
    typer.echo(f"wrote {prov['episodes']} episodes, {prov['transitions']} transitions "
               f"({', '.join(prov['method'])}, seed {seed}"
               f"{', og-marl layout' if layout == 'og-marl' else ''}) to {dst}")


def combine_cmd(
    dst: str = typer.Argument(..., help="New vault to write (must not exist)."),
    sources: list[str] = typer.Argument(..., help="Two or more vaults of the same structure."),
    layout: str = typer.Option(
        "rows", "--layout",
        help="rows (default): stack the sources' rows, shorter ones zero-padded (row_lengths in "
             "the metadata), every episode kept. og-marl: one row, the complete episodes of "
             "every source end to end (sources in the order given), no padding, as OG-MARL's "
             "code reads a vault; incomplete episodes dropped and counted. See docs/TOOLS.md."),
) -> None:
    """Concatenate vaults along rows (each row stays one continuous stream) into DST.

    \b
    marlvault vault combine vaults/all.vlt/Mixed vaults/a.vlt/Good vaults/a.vlt/Poor
    marlvault vault combine og/all.vlt/Mixed vaults/a.vlt/Good vaults/a.vlt/Poor --layout og-marl
    """
    from marlvault.tools.combine import combine

    if len(sources) < 2:
        raise ConfigError(f"combine: expected at least 2 source vaults, found {len(sources)}")
    prov = combine(dst, sources, progress=True, layout=layout)
    if prov["layout"] == "og-marl":
        typer.echo(f"wrote {prov['episodes']} complete episodes, {prov['transitions']} "
                   f"transitions from {len(sources)} vaults to {dst} (og-marl layout, one row); "
                   f"dropped {prov['dropped_incomplete']} incomplete episodes "
                   f"({prov['dropped_steps']} steps)")
        return
    rows = prov["sources"][-1]["rows"][1]
    typer.echo(f"wrote {rows} rows from {len(sources)} vaults to {dst}")


def coverage_cmd(
    path: str = typer.Argument(..., help="Vault path/URL."),
    decimals: int = typer.Option(2, "--decimals", help="Round floats to this many decimals."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    memory_mb: float = typer.Option(
        256.0, "--memory-mb",
        help="MiB for the hashes held in memory; larger vaults are counted exactly through "
             "temporary partition files."),
    tmp_dir: Path = typer.Option(
        None, "--tmp-dir", help="Folder for the temporary partition files (default: system temp)."),
) -> None:
    """Joint state-action and mean per-agent observation-action coverage."""
    from marlvault.tools.coverage import coverage

    cov = coverage(path, decimals=decimals, progress=not as_json, memory_budget_mb=memory_mb,
                   tmp_dir=None if tmp_dir is None else str(tmp_dir))
    if as_json:
        typer.echo(json.dumps(cov.to_dict(), indent=2))
        return
    typer.echo(f"transitions: {cov.transitions} (floats rounded to {cov.decimals} decimals)")
    typer.echo(f"joint state-action coverage (state = {cov.state_source}): "
               f"{cov.joint_coverage:.4f} ({cov.joint_unique} distinct)")
    typer.echo(f"mean per-agent observation-action coverage: {cov.agent_coverage:.4f} "
               f"(distinct per agent: {list(cov.agent_unique)})")
    if cov.partitions > 1:
        typer.echo(f"counted in {cov.partitions} hash partitions per counter "
                   f"(--memory-mb {memory_mb:g})")


def card_cmd(
    path: str = typer.Argument(..., help="Vault path/URL."),
    out: Path = typer.Option(None, "--output", "-o", help="Markdown file (default: stdout)."),
    decimals: int = typer.Option(2, "--decimals", help="Rounding for coverage."),
) -> None:
    """A Markdown dataset card (with a return histogram PNG next to the file)."""
    from marlvault.tools.card import dataset_card

    text = dataset_card(path, out=out, decimals=decimals, progress=out is not None)
    if out is None:
        typer.echo(text)
    else:
        typer.echo(f"card written to {out}")


def export_cmd(
    src: str = typer.Argument(..., help="Source vault."),
    dst: str = typer.Argument(
        ..., help="New file or vault (must not exist): DATA.h5 / DATA.hdf5 (HDF5), DATA.npz "
                  "(numpy), or a vault path such as vaults/NAME.vlt/UID (needs --layout og-marl)."),
    layout: str = typer.Option(
        None, "--layout",
        help="rows (default for files): arrays (B, T, ...) as stored, plus row_lengths and the "
             "episode table, nothing lost. og-marl: one row, the complete episodes end to end "
             "(by end step, then row), no padding; incomplete episodes dropped and counted."),
    max_memory_mb: float = typer.Option(
        1024.0, "--max-memory-mb",
        help="Largest npz export in MiB (npz is built in memory; use .h5 above it)."),
) -> None:
    """Export SRC for code that does not read vaults: HDF5/npz files, or the OG-MARL layout.

    \b
    marlvault vault export SRC data.h5                       # torch etc.: (B, T, ...) + row_lengths
    marlvault vault export SRC data.npz --layout og-marl     # flat: (1, steps, ...), no padding
    marlvault vault export SRC vaults/x.vlt/Good --layout og-marl   # for OG-MARL's vault loader

    Files also hold episodes/{row,start,length,return,terminated,truncated,complete}, the
    source metadata (JSON) and the export's provenance. See docs/TOOLS.md, "export".
    """
    from marlvault.tools.export import export

    prov = export(src, dst, layout=layout, progress=True, max_memory_mb=max_memory_mb)
    line = (f"wrote {prov['episodes']} complete episodes, {prov['transitions']} transitions "
            f"({prov['layout']} layout, {prov['format']}) to {dst}")
    if prov["layout"] == "og-marl":
        line += (f"; dropped {prov['dropped_incomplete']} incomplete episodes "
                 f"({prov['dropped_steps']} steps)")
    else:
        line += f"; {prov['incomplete_kept']} incomplete episodes kept (complete == False)"
    typer.echo(line)


def register_tools(vault_app: typer.Typer) -> None:
    """Add the dataset tools to the ``marlvault vault`` group."""
    vault_app.command("returns")(returns_cmd)
    vault_app.command("subsample")(subsample_cmd)
    vault_app.command("combine")(combine_cmd)
    vault_app.command("coverage")(coverage_cmd)
    vault_app.command("card")(card_cmd)
    vault_app.command("export")(export_cmd)
