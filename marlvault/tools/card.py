"""Markdown dataset cards: what a vault holds, where it came from, how good it is.

A card has: environment and scenario, agents, observation/action/state spaces (from the
structure), how it was generated (from ``metadata["marlvault"]`` and free top-level keys), the
return table, the coverage figures, and a histogram image written next to the card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marlvault.schema import ACTIONS as ACTION_KEY
from marlvault.schema import LEGALS as LEGALS_KEY
from marlvault.schema import OBS as OBS_KEY
from marlvault.schema import REWARDS as REWARD_KEY
from marlvault.schema import STATE as STATE_KEY
from marlvault.tools._common import (
    marlvault_metadata,
    open_vault,
    row_lengths,
    step_specs,
)
from marlvault.tools.coverage import Coverage, coverage
from marlvault.tools.index import episode_table
from marlvault.tools.returns import ReturnStats, plot_returns, stats_from_returns

_ENV_KEYS = ("env", "env_name", "environment")
_SCENARIO_KEYS = ("scenario", "task", "task_name", "scenario_name")
_FLASHBAX_KEYS = ("version", "structure_shape", "structure_dtype", "marlvault")


def _find(meta: dict[str, Any], names: tuple[str, ...], depth: int = 3) -> Any:
    """Breadth-first search for the first value stored under any of ``names`` (a dict value
    counts through its ``"name"`` entry, e.g. ``{"env": {"name": "rware"}}``)."""
    level = [meta]
    for _ in range(depth):
        nxt = []
        for node in level:
            for key, value in node.items():
                if key in names and not isinstance(value, dict):
                    return value
                if key in names and isinstance(value.get("name"), str):
                    return value["name"]
                if isinstance(value, dict):
                    nxt.append(value)
        level = nxt
    return None


def _spaces(specs: dict[str, tuple]) -> list[tuple[str, str]]:
    """(property, value) rows describing agents and spaces."""
    rows = []
    obs = specs.get(OBS_KEY)
    if obs is not None and len(obs[0]) >= 1:
        rows.append(("agents (N)", str(obs[0][0])))
        rows.append(("observation space", f"{tuple(obs[0][1:])} {obs[1]} per agent"))
    act = specs.get(ACTION_KEY)
    if act is not None:
        kind = "discrete" if act[1].kind in "iu" else "continuous"
        legals = specs.get(LEGALS_KEY)
        size = f", {legals[0][-1]} actions" if legals is not None and kind == "discrete" else ""
        rows.append(("action space", f"{kind}{size} (stored {tuple(act[0])} {act[1]})"))
    state = specs.get(STATE_KEY)
    rows.append(("global state", f"{tuple(state[0])} {state[1]}" if state else "none"))
    rew = specs.get(REWARD_KEY)
    if rew is not None:
        rows.append(("rewards", f"{tuple(rew[0])} {rew[1]}"))
    return rows


def _table(rows: list[tuple[str, str]], head: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {a} | {str(b).replace('|', '/')} |" for a, b in rows]
    return "\n".join(lines)


def _returns_rows(s: ReturnStats, ends: tuple[int, int]) -> list[tuple[str, str]]:
    f = "{:.4g}".format
    return [
        ("complete episodes", str(s.count)), ("incomplete episodes (excluded)", str(s.incomplete)),
        ("ended by termination / by truncation", f"{ends[0]} / {ends[1]}"),
        ("transitions in complete episodes", str(s.transitions)),
        ("mean episode length", f(s.mean_length)), ("mean return", f(s.mean)),
        ("std", f(s.std)), ("min", f(s.min)), ("25%", f(s.q25)), ("median", f(s.median)),
        ("75%", f(s.q75)), ("max", f(s.max)), ("IQR", f(s.iqr)),
    ]


def _coverage_rows(c: Coverage) -> list[tuple[str, str]]:
    return [
        ("transitions", str(c.transitions)), ("rounding", f"{c.decimals} decimal places"),
        (f"joint state-action coverage (state = {c.state_source})",
         f"{c.joint_coverage:.4f} ({c.joint_unique} distinct)"),
        ("mean per-agent observation-action coverage",
         f"{c.agent_coverage:.4f} (distinct per agent: {list(c.agent_unique)})"),
    ]


def _generation(meta: dict[str, Any], ours: dict[str, Any]) -> str:
    """The 'how it was generated' section: our metadata, then free top-level keys, as JSON."""
    free = {k: v for k, v in meta.items() if k not in _FLASHBAX_KEYS}
    parts = []
    if ours:
        parts.append("From `metadata.json` → `marlvault`:\n\n```json\n"
                     + json.dumps(ours, indent=2, default=str, sort_keys=True) + "\n```")
    if free:
        parts.append("Other metadata keys:\n\n```json\n"
                     + json.dumps(free, indent=2, default=str, sort_keys=True) + "\n```")
    return "\n\n".join(parts) or "The vault carries no generation metadata (e.g. flashbax-written)."


def dataset_card(
    vault: Any,
    out: str | Path | None = None,
    image: str | Path | None = None,
    decimals: int = 2,
    progress: bool = False,
) -> str:
    """Build a Markdown dataset card; write it (and the histogram PNG) when ``out`` is given.

    Args:
        vault: path/URL or open vault.
        out: Markdown file to write; ``None`` only returns the text.
        image: PNG to write the return plot to; default ``<out stem>_returns.png`` next to
            ``out`` (no image when both are ``None``).
        decimals: rounding of the coverage figures.
        progress: show progress bars.

    Returns:
        The Markdown text.
    """
    with open_vault(vault) as v:
        meta = dict(getattr(v, "metadata", None) or {})
        ours = marlvault_metadata(v)
        specs = step_specs(v)
        table = episode_table(v, progress=progress)
        done = table.select(table.complete)
        rets = done.ret
        stats = stats_from_returns(str(v.path), rets, done.length, int((~table.complete).sum()))
        ends = (int(done.terminated.sum()), int(done.truncated.sum()))
        cov = coverage(v, decimals=decimals, progress=progress)
        path, rows, steps = str(v.path), int(v.num_rows), int(v.num_steps)
        lengths = row_lengths(v)
    if image is None and out is not None:
        image = Path(out).with_name(Path(out).stem + "_returns.png")
    env = _find(ours, _ENV_KEYS) or _find(meta, _ENV_KEYS) or "unknown"
    scenario = _find(ours, _SCENARIO_KEYS) or _find(meta, _SCENARIO_KEYS) or "unknown"
    overview = [("path", f"`{path}`"), ("environment", env), ("scenario", scenario),
                ("rows (B)", str(rows)), ("time steps per row (T)", str(steps)),
                ("transitions (valid steps of all rows)", str(int(lengths.sum())))]
    if (lengths < steps).any():
        overview.append(("padded rows", f"{int((lengths < steps).sum())} (valid steps "
                         f"{int(lengths.min())}..{int(lengths.max())}; padding excluded)"))
    overview += _spaces(specs)
    keys = [(f"`{k}`", f"{tuple(s)} {d}") for k, (s, d) in specs.items()]
    sections = [
        f"# Dataset card: {env} / {scenario}",
        "## Overview\n\n" + _table(overview, ("property", "value")),
        "## Keys (per step, after `[row, time]`)\n\n" + _table(keys, ("key", "shape, dtype")),
        "## How it was generated\n\n" + _generation(meta, ours),
        "## Episode returns\n\nTeam return = sum over the episode's steps of the mean over agents "
        "of the rewards; complete episodes only.\n\n" + _table(_returns_rows(stats, ends),
                                                               ("statistic", "value")),
        "## Coverage\n\nDistinct pairs / transitions, computed by streaming 64-bit hashes.\n\n"
        + _table(_coverage_rows(cov), ("figure", "value")),
    ]
    if image is not None:
        plot_returns({f"{env}/{scenario}": rets}, image, title=f"Episode returns: {env}/{scenario}")
        rel = Path(image).name if out is not None and Path(image).parent == Path(out).parent \
            else str(image)
        sections.append(f"## Return distribution\n\n![episode returns]({rel})")
    text = "\n\n".join(sections) + "\n"
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text
