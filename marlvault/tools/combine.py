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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marlvault.errors import SchemaMismatchError
from marlvault.tools._common import (
    DEFAULT_CHUNK_BYTES,
    derived_metadata,
    open_vault,
    progress_bar,
    row_lengths,
    step_specs,
)
from marlvault.tools.writer import create_like, zeros_batch
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
    dst: str, sources: list[Any], progress: bool = False, budget: int | None = None
) -> dict[str, Any]:
    """Write the row-wise concatenation of ``sources`` into a new vault at ``dst``.

    Args:
        dst: path or URL of the new vault (must not exist).
        sources: two or more vault paths/URLs (or open vaults) with the same structure.
        progress: show a progress bar.
        budget: bytes per written chunk.

    Returns:
        The provenance record stored under ``metadata["marlvault"]["provenance"]`` (the valid
        length of each output row is stored under ``metadata["marlvault"]["row_lengths"]``).

    Raises:
        SchemaMismatchError: the sources differ in a key, shape or dtype.
    """
    opened = [open_vault(s) for s in sources]
    vaults = [cm.__enter__() for cm in opened]
    try:
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
        "tool": "combine", "axis": "rows", "method": ["concatenate_rows"],
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


def _read_padded(vault: Any, spec: dict, t0: int, t1: int, steps: int) -> dict[str, np.ndarray]:
    """Steps ``[t0, t1)`` of every row of ``vault``, zero beyond its ``steps``: flat ``[B, t, ...]``."""
    out = zeros_batch(spec, int(vault.num_rows), t1 - t0)
    if t0 < steps:
        got = flatten(vault.read(start=t0, stop=min(t1, steps)))  # [B, t', ...] each
        for k, x in got.items():
            out[k][:, : x.shape[1]] = x
    return out
