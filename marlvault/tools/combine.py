"""Concatenate vaults of the same structure into a new vault, along the row axis.

Why rows and not time: a row is the continuous stream of one environment. Appending vault 2
after vault 1 in time would glue unrelated rollouts together in each row, and the incomplete
episode at the end of a vault-1 row would merge with the first episode of the vault-2 row into a
fake episode. Stacking rows keeps every stream, and therefore every episode, exactly as recorded.

Rows of a shorter source are padded at the end with zero steps up to the longest source's length.
``metadata["marlvault"]["row_lengths"]`` holds each output row's valid length (a padded source
row keeps its own valid length), so the episode index, the offline samplers and every tool skip
the padding (flashbax readers would see it as zero steps). ``metadata["marlvault"]["provenance"]``
records each source's path, row range and length.

``layout="og-marl"`` instead writes one row (``B == 1``, no padding), the layout OG-MARL's code
reads (see :mod:`marlvault.tools.export`): the *complete* episodes of each source, sources in the
order given, each source's episodes in its episode-table order (by end step, then source row),
all end to end. Every episode is copied exactly, so its last step keeps its ``terminals`` or
``truncations`` flag, and no fake episode can form at a seam because only complete episodes are
joined. Incomplete episodes (a row's unfinished tail) are dropped and counted per source and in
total. Each source is streamed twice (episode table, then data); memory holds one source chunk
plus the open episode of each source row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marlvault.errors import SchemaMismatchError
from marlvault.tools._common import (
    DEFAULT_CHUNK_BYTES,
    check_output_layout,
    derived_metadata,
    open_vault,
    progress_bar,
    row_lengths,
    step_specs,
)
from marlvault.tools.index import episode_table
from marlvault.tools.subsample import copy_episodes
from marlvault.tools.writer import PackedWriter, create_like, zeros_batch
from marlvault.tree import flatten, unflatten


def check_same_structure(paths: list[str], specs: list[dict[str, tuple]]) -> None:
    """Raise :class:`SchemaMismatchError` naming the first key where ``specs[i]`` differs from
    ``specs[0]`` (missing, extra, per-step shape or dtype)."""
    ref = specs[0]
    for path, spec in zip(paths[1:], specs[1:], strict=False):
        for key in sorted(set(ref) | set(spec)):
            if key not in spec or key not in ref:
                where, other = (path, paths[0]) if key not in spec else (paths[0], path)
                raise SchemaMismatchError(
                    f"{where}: expected key {key!r} (present in {other}), found no such key; "
                    "combine only vaults of the same structure (drop or add the key first)"
                )
            if tuple(ref[key][0]) != tuple(spec[key][0]) or ref[key][1] != spec[key][1]:
                raise SchemaMismatchError(
                    f"{path}: key {key!r} expected per-step shape {tuple(ref[key][0])} and dtype "
                    f"{ref[key][1]} (as in {paths[0]}), found {tuple(spec[key][0])} and "
                    f"{spec[key][1]}; combine only vaults recorded with the same env and schema"
                )


def combine(
    dst: str, sources: list[Any], progress: bool = False, budget: int | None = None,
    layout: str = "rows",
) -> dict[str, Any]:
    """Write the row-wise concatenation of ``sources`` into a new vault at ``dst``.

    Args:
        dst: path or URL of the new vault (must not exist).
        sources: two or more vault paths/URLs (or open vaults) with the same structure.
        progress: show a progress bar.
        budget: bytes per written chunk.
        layout: ``"rows"`` (stack the rows) or ``"og-marl"`` (one row of the complete episodes
            end to end; see the module docstring).

    Returns:
        The provenance record stored under ``metadata["marlvault"]["provenance"]`` (for
        ``"rows"`` the valid length of each output row is stored under
        ``metadata["marlvault"]["row_lengths"]``; for ``"og-marl"`` the record counts the
        ``episodes``, ``transitions`` and ``dropped_incomplete`` episodes, in total and per
        source).

    Raises:
        ConfigError: unknown layout.
        SchemaMismatchError: the sources differ in a key, shape or dtype.
    """
    check_output_layout("combine", layout)
    opened = [open_vault(s) for s in sources]
    vaults = [cm.__enter__() for cm in opened]
    try:
        if layout == "og-marl":
            return _combine_og_marl(dst, vaults, progress, budget)
        return _combine_open(dst, vaults, progress, budget)
    finally:
        for cm in reversed(opened):
            cm.__exit__(None, None, None)


def _combine_open(dst: str, vaults: list[Any], progress: bool, budget: int | None) -> dict:
    paths = [str(v.path) for v in vaults]
    specs = [step_specs(v) for v in vaults]
    check_same_structure(paths, specs)
    spec = specs[0]
    rows = [int(v.num_rows) for v in vaults]
    steps = [int(v.num_steps) for v in vaults]
    total_rows, total_steps = sum(rows), max(steps)
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(int)
    prov = {
        "tool": "combine", "axis": "rows", "layout": "rows", "method": ["concatenate_rows"],
        "sources": [
            {"path": p, "rows": [int(offsets[i]), int(offsets[i + 1])], "steps": steps[i]}
            for i, p in enumerate(paths)
        ],
        "padding": "rows of shorter sources are zero-padded at the end to the longest length",
    }
    meta = derived_metadata(vaults[0], prov)
    meta["marlvault"]["row_lengths"] = np.concatenate([row_lengths(v) for v in vaults]).tolist()
    per_step = sum(int(np.prod(s)) * d.itemsize for s, d in spec.values()) * total_rows
    chunk = max(1, int((budget or DEFAULT_CHUNK_BYTES) // max(per_step, 1)))
    with create_like(dst, spec, total_rows, meta) as out, progress_bar(
        "combine" if progress else None, total_steps
    ) as advance:
        for t0 in range(0, total_steps, chunk):
            t1 = min(t0 + chunk, total_steps)
            parts = [_read_padded(v, spec, t0, t1, n) for v, n in zip(vaults, steps, strict=False)]
            out.append(unflatten({k: np.concatenate([p[k] for p in parts]) for k in spec}))
            advance(t1 - t0)
    return prov


def _combine_og_marl(dst: str, vaults: list[Any], progress: bool, budget: int | None) -> dict:
    paths = [str(v.path) for v in vaults]
    specs = [step_specs(v) for v in vaults]
    check_same_structure(paths, specs)
    tables = [episode_table(v, progress=progress) for v in vaults]
    chosen = [t.select(np.flatnonzero(t.complete)) for t in tables]
    lengths = [int(c.length.sum()) for c in chosen]
    ends = np.cumsum([0, *lengths]).astype(int)
    per_source = []
    for i, (p, t, c) in enumerate(zip(paths, tables, chosen, strict=True)):
        per_source.append({
            "path": p, "steps": [int(ends[i]), int(ends[i + 1])], "episodes": c.num,
            "transitions": lengths[i], "dropped_incomplete": int((~t.complete).sum()),
            "dropped_steps": int(t.length[~t.complete].sum()),
        })
    prov = {
        "tool": "combine", "axis": "time", "layout": "og-marl",
        "method": ["concatenate_complete_episodes"], "sources": per_source,
        "order": "sources in the order given; within a source by end step, then source row",
        "episodes": sum(c.num for c in chosen), "transitions": int(ends[-1]),
        "terminated": int(sum(c.terminated.sum() for c in chosen)),
        "truncated": int(sum(c.truncated.sum() for c in chosen)),
        "dropped_incomplete": sum(s["dropped_incomplete"] for s in per_source),
        "dropped_steps": sum(s["dropped_steps"] for s in per_source),
    }
    with create_like(dst, specs[0], 1, derived_metadata(vaults[0], prov)) as out:
        writer = PackedWriter(out, np.array([ends[-1]], np.int64), budget=budget)
        for v, c in zip(vaults, chosen, strict=True):
            copy_episodes(v, c, np.zeros(c.num, np.int64), writer, progress, label="combine")
        writer.finish()
    return prov


def _read_padded(vault: Any, spec: dict, t0: int, t1: int, steps: int) -> dict[str, np.ndarray]:
    """Steps ``[t0, t1)`` of every row of ``vault``, zero beyond its ``steps``: flat ``[B, t, ...]``."""
    out = zeros_batch(spec, int(vault.num_rows), t1 - t0)
    if t0 < steps:
        got = flatten(vault.read(start=t0, stop=min(t1, steps)))  # [B, t', ...] each
        for k, x in got.items():
            out[k][:, : x.shape[1]] = x
    return out
