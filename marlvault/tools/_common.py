"""Shared plumbing of the dataset tools: opening vaults, flat key views, chunk sizes, progress.

Every tool reads a vault only through the vault engine's public API (``Vault.open``, ``read``,
``iter_chunks``, ``num_rows``, ``num_steps``, ``metadata``), so the tools work on any vault the
engine opens: ours, flashbax-written ones and the OG-MARL key layout.

Keys are written as dotted paths (``"infos.legals"``) and vault data are handled as *flat* dicts
``{dotted key: numpy array [row, time, ...]}``.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from marlvault.tree import flatten

DEFAULT_CHUNK_BYTES = 16 * 2**20
"""Bytes of uncompressed data one streaming chunk holds (all rows, all requested keys)."""

@contextlib.contextmanager
def open_vault(path_or_vault: Any, mode: str = "r") -> Iterator[Any]:
    """Yield an open vault; a path is opened (and closed after), a ``Vault`` is passed through."""
    if hasattr(path_or_vault, "iter_chunks"):
        yield path_or_vault
        return
    from marlvault.vault.vault import Vault

    vault = Vault.open(str(path_or_vault), mode=mode)
    try:
        yield vault
    finally:
        vault.close()


def vault_keys(vault: Any) -> list[str]:
    """Dotted keys of every leaf in the vault's structure."""
    return list(step_specs(vault))


def step_specs(vault: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-step shape (without ``B, T``) and dtype of every leaf: ``{key: (shape, dtype)}``."""
    flat = getattr(vault, "flat_structure", None)
    flat = flatten(vault.structure) if flat is None else flat
    return {k: (tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype)) for k, leaf in flat.items()}


def steps_per_chunk(
    vault: Any, keys: list[str] | None = None, rows: int | None = None, budget: int | None = None
) -> int:
    """Time steps per streaming chunk so that one chunk of ``keys`` holds about ``budget`` bytes,
    rounded down to a multiple of the vault's own chunk length (reads stay chunk-aligned)."""
    specs = step_specs(vault)
    keys = list(specs) if keys is None else keys
    per_step = sum(math.prod(specs[k][0]) * specs[k][1].itemsize for k in keys)
    per_step *= vault.num_rows if rows is None else rows
    steps = max(1, int((budget or DEFAULT_CHUNK_BYTES) // max(per_step, 1)))
    native = int(getattr(vault, "chunk_steps", 1) or 1)
    return max(native, steps // native * native)


def iter_flat_chunks(
    vault: Any,
    keys: list[str] | None = None,
    budget: int | None = None,
    progress: str | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Stream the vault in time chunks: yield ``(start, {key: array [B, t, ...]})``.

    Args:
        vault: an open vault.
        keys: dotted keys to read; ``None`` reads every leaf.
        budget: bytes per chunk (default :data:`DEFAULT_CHUNK_BYTES`).
        progress: a description to show a progress bar under, or ``None`` for none.
    """
    spc = steps_per_chunk(vault, keys, budget=budget)
    total = int(vault.num_steps)
    with progress_bar(progress, total) as advance:
        for start, tree in vault.iter_chunks(steps_per_chunk=spc, keys=keys):
            flat = {k: np.asarray(v) for k, v in flatten(tree).items()}  # [B, t, ...] each
            yield int(start), flat
            advance(next(iter(flat.values())).shape[1] if flat else 0)


@contextlib.contextmanager
def progress_bar(description: str | None, total: int) -> Iterator[Any]:
    """A rich progress bar on stderr counting time steps; a no-op when ``description`` is None."""
    if description is None:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} steps"), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def vault_label(vault: Any, fallback: str = "vault") -> str:
    """A short name for plots and tables: the vault path's last two parts."""
    path = str(getattr(vault, "path", fallback)).rstrip("/")
    parts = path.split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else path


def marlvault_metadata(vault: Any) -> dict[str, Any]:
    """The vault's ``"marlvault"`` metadata section (empty dict for flashbax vaults)."""
    meta = getattr(vault, "metadata", None) or {}
    if "marlvault" in meta and isinstance(meta["marlvault"], Mapping):
        return dict(meta["marlvault"])
    return {}


def row_lengths(vault: Any) -> np.ndarray:
    """``[B]`` int64 valid steps of each row (``Vault.row_lengths``; all of ``num_steps`` for
    vault objects without it). Steps at or beyond are padding and never count as data."""
    lengths = getattr(vault, "row_lengths", None)
    if lengths is None:
        return np.full(int(vault.num_rows), int(vault.num_steps), np.int64)
    return np.asarray(lengths, np.int64)


def valid_steps(lengths: np.ndarray, start: int, steps: int) -> np.ndarray:
    """``[B, steps]`` bool, True where step ``start + i`` of row ``b`` is below ``lengths[b]``."""
    return (start + np.arange(steps))[None, :] < np.asarray(lengths)[:, None]


ENGINE_KEYS = ("format_revision", "chunk_steps", "compression", "created", "creator")
"""Keys of the ``"marlvault"`` section the vault engine writes itself on create."""
FORMAT_KEYS = ("version", "structure_shape", "structure_dtype", "marlvault")


def derived_metadata(source: Any, provenance: dict[str, Any]) -> dict[str, Any]:
    """Metadata for a vault derived from ``source``: its free top-level keys, its ``"marlvault"``
    section without the engine's own keys and ``row_lengths``, and ``provenance`` (which also keeps the source's
    creation time and creator)."""
    meta = dict(getattr(source, "metadata", None) or {})
    ours = marlvault_metadata(source)
    prov = dict(provenance)
    for key in ("created", "creator"):
        if key in ours:
            prov[f"source_{key}"] = ours[key]
    # the derived vault has its own rows and one writer
    dropped = (*ENGINE_KEYS, "provenance", "row_lengths", "writers")
    kept = {k: v for k, v in ours.items() if k not in dropped}
    if "provenance" in ours:
        prov["source_provenance"] = ours["provenance"]
    free = {k: v for k, v in meta.items() if k not in FORMAT_KEYS}
    return {**free, "marlvault": {**kept, "provenance": prov}}


OUTPUT_LAYOUTS = ("rows", "og-marl")
"""Layouts of the vaults ``combine`` and ``subsample`` write (see docs/TOOLS.md, "export")."""


def check_output_layout(tool: str, layout: str) -> str:
    """Return ``layout`` if it is one of :data:`OUTPUT_LAYOUTS`; else raise :class:`ConfigError`."""
    if layout in OUTPUT_LAYOUTS:
        return layout
    from marlvault.errors import ConfigError

    raise ConfigError(
        f"{tool}: --layout expected one of {', '.join(OUTPUT_LAYOUTS)}, found {layout!r}; fix: "
        "pass --layout rows (the default) or --layout og-marl (one row of complete episodes "
        "end to end, no padding, as OG-MARL reads a vault)"
    )
