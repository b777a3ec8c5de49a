"""Library side of ``marlvault vault info`` / ``verify``: describe and check a vault."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marlvault.errors import MarlvaultError, VaultCorruptError
from marlvault.vault import episodes as ep
from marlvault.vault import format as fmt
from marlvault.vault.vault import Vault


def describe(path: str) -> dict[str, Any]:
    """A JSON-ready summary: structure, rows, steps, episodes, size on disk, codec, creator."""
    vault = Vault.open(path)
    for problem in vault.missing_chunks():
        raise VaultCorruptError(f"{vault.path}: {problem}")
    index = vault.episodes
    ours = _ours(vault)
    extra = {
        k: v
        for k, v in vault.metadata.items()
        if k not in ("version", "structure_shape", "structure_dtype", "marlvault")
    }
    lengths = vault.row_lengths
    padded = lengths < vault.num_steps
    return {
        "path": vault.path,
        "version": vault.metadata.get("version"),
        "writer_progress": vault.writer_progress,
        "written_by": "marlvault" if ours else "flashbax",
        "rows": vault.num_rows,
        "steps": vault.num_steps,
        "transitions": int(lengths.sum()),
        "padding": {
            "padded_rows": int(padded.sum()),
            "padded_steps": int((vault.num_steps - lengths).sum()),
            "min_valid_steps": int(lengths.min()) if lengths.size else 0,
            "max_valid_steps": int(lengths.max(initial=0)),
        }
        if fmt.ROW_LENGTHS_KEY in ours
        else None,
        "structure": [
            {"key": k, "shape": list(s.shape), "dtype": np.dtype(s.dtype).name}
            for k, s in vault.flat_structure.items()
        ],
        "episodes": {
            "complete": int(index["complete"].sum()),
            "incomplete": int((~index["complete"]).sum()),
            "mean_return": float(index["return"][index["complete"]].mean())
            if index["complete"].any()
            else None,
        },
        "size_on_disk": vault.size_on_disk(),
        "uncompressed_bytes": vault.num_rows
        * vault.num_steps
        * sum(
            int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
            for s in vault.flat_structure.values()
        ),
        "chunk_steps": vault.chunk_steps,
        "codec": vault.compression,
        "creator": ours.get("creator"),
        "marlvault": {k: v for k, v in ours.items() if k != "creator"},
        "metadata": extra,
    }


def _ours(vault: Vault) -> dict[str, Any]:
    """The ``"marlvault"`` section (empty when absent or not a dict: flashbax vaults)."""
    ours = vault.metadata.get("marlvault")
    return ours if isinstance(ours, dict) else {}


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`."""

    path: str
    steps_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_chunk(
    vault: Vault, start: int, data: dict[str, np.ndarray], report: VerifyReport
) -> None:
    for key, spec in vault.flat_structure.items():
        arr = data[key]
        want = (vault.num_rows, arr.shape[1], *spec.shape)
        if arr.shape != want or arr.dtype != spec.dtype:
            report.problems.append(
                f"{key} at step {start}: expected {want} {spec.dtype}, found {arr.shape} {arr.dtype}"
            )


def verify(path: str, steps_per_chunk: int | None = None) -> VerifyReport:
    """Read every committed step in chunks; check shapes, dtypes and the episode index."""
    report = VerifyReport(path)
    try:
        vault = Vault.open(path)
        report.path = vault.path
        report.problems += vault.missing_chunks()
        cursor = ep.empty_cursor(vault.num_rows)
        found = []
        for start, data in vault.iter_chunks(steps_per_chunk, flat=True):
            _check_chunk(vault, start, data, report)
            steps = next(iter(data.values())).shape[1]
            rows, cursor = ep.scan_flat(cursor, start, steps, data, vault.episode_keys)
            found.append(rows)
            report.steps_checked = start + steps
        if report.steps_checked != vault.num_steps:
            report.problems.append(
                f"vault_index: expected {vault.num_steps} readable steps, found {report.steps_checked}"
            )
        fresh = ep.make_index(np.concatenate([np.zeros((0, 6)), *found]), cursor)
        lengths = _check_row_lengths(vault, report)
        if lengths is not None and (lengths < vault.num_steps).any():
            fresh = vault.clip_to_row_lengths(fresh)
        _compare_index(vault.episodes, fresh, report)
    except MarlvaultError as err:
        report.problems.append(f"{type(err).__name__}: {err}")
    return report


def _check_row_lengths(vault: Vault, report: VerifyReport) -> np.ndarray | None:
    """Check ``marlvault.row_lengths``: B integers in ``[0, vault_index]``. Returns them or None."""
    raw = _ours(vault).get(fmt.ROW_LENGTHS_KEY)
    try:
        stored = fmt.parse_row_lengths(vault.path, raw, vault.num_rows)
    except MarlvaultError as err:
        report.problems.append(f"row_lengths: {err}")
        return None
    if stored is None:
        return None
    over = np.flatnonzero(stored > vault.num_steps)
    if over.size:
        b = int(over[0])
        report.problems.append(
            f"row_lengths: expected every row's valid length <= vault_index {vault.num_steps}, "
            f"found {over.size} longer (row {b}: {int(stored[b])}); fix: rewrite metadata.json "
            "with the real lengths"
        )
    return np.minimum(stored, vault.num_steps)


def _compare_index(stored: np.ndarray, fresh: np.ndarray, report: VerifyReport) -> None:
    if len(stored) != len(fresh):
        report.problems.append(
            f"episode index: expected {len(fresh)} episodes, found {len(stored)}"
        )
        return
    for name in ("row", "start", "length", "terminated", "truncated", "complete"):
        bad = np.flatnonzero(stored[name] != fresh[name])
        if bad.size:
            report.problems.append(
                f"episode index: column {name!r} differs at {bad.size} episodes (first {bad[0]})"
            )
    if not np.allclose(stored["return"], fresh["return"], rtol=1e-6, atol=1e-6):
        report.problems.append("episode index: returns differ from a recomputation")
