"""Writing derived vaults: create one shaped like a source, and fill its rows independently.

A vault's rows share one time axis (``append`` takes ``[B, t, ...]`` for all rows at once), so
:class:`PackedWriter` keeps a pending buffer per output row and appends the common prefix of all
rows whenever it reaches a chunk; at the end the rows shorter than the longest are padded with
zero steps. Memory stays at about one chunk plus one episode per row.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from marlvault.tools._common import DEFAULT_CHUNK_BYTES
from marlvault.tree import unflatten

Specs = Mapping[str, tuple[tuple[int, ...], np.dtype]]


def zeros_batch(specs: Specs, rows: int, steps: int) -> dict[str, np.ndarray]:
    """Flat zero arrays ``{key: [rows, steps, ...]}`` of the given per-step specs."""
    return {k: np.zeros((rows, steps, *shape), dtype) for k, (shape, dtype) in specs.items()}


@contextlib.contextmanager
def create_like(dst: str, specs: Specs, rows: int, metadata: dict[str, Any]) -> Iterator[Any]:
    """Create a vault at ``dst`` with ``rows`` rows and the leaf specs ``specs``; yield it open.

    The vault is flushed and closed when the block ends without error. On an error it is left
    as the engine leaves an interrupted writer: a valid prefix (delete it and retry).

    Args:
        dst: path or URL of the new vault (must not exist).
        specs: ``{dotted key: (per-step shape, dtype)}``.
        rows: B of the new vault.
        metadata: the new vault's free metadata keys, ours under ``"marlvault"``.
    """
    from marlvault.vault.vault import Vault

    example = unflatten(zeros_batch(specs, rows, 1))
    with Vault.create(str(dst), example, metadata=metadata) as vault:
        yield vault
        vault.flush()


class PackedWriter:
    """Appends per-row streams of steps to a vault whose rows are filled independently."""

    def __init__(self, vault: Any, row_lengths: np.ndarray, budget: int | None = None) -> None:
        """Args:
        vault: the open output vault (empty).
        row_lengths: [rows] int, the planned number of valid steps of each row.
        budget: bytes per append.
        """
        from marlvault.tools._common import step_specs

        self.vault = vault
        self.specs = step_specs(vault)
        self.rows = len(row_lengths)
        self.total = int(np.max(row_lengths)) if len(row_lengths) else 0
        per_step = sum(math.prod(s) * d.itemsize for s, d in self.specs.values()) * self.rows
        self.chunk = max(1, int((budget or DEFAULT_CHUNK_BYTES) // max(per_step, 1)))
        self.pending: list[list[dict[str, np.ndarray]]] = [[] for _ in range(self.rows)]
        self.pending_len = np.zeros(self.rows, np.int64)
        self.written = 0

    def add(self, row: int, steps: dict[str, np.ndarray]) -> None:
        """Queue ``steps`` (flat ``{key: [t, ...]}``) at the end of output row ``row``."""
        self.pending[row].append(steps)
        self.pending_len[row] += next(iter(steps.values())).shape[0]
        while self.pending_len.min() >= self.chunk:
            self._append(self.chunk)

    def finish(self) -> None:
        """Pad every row to the longest one with zero steps and append everything left."""
        end = max(self.total, self.written + int(self.pending_len.max(initial=0)))
        for r in range(self.rows):
            pad = end - self.written - int(self.pending_len[r])
            if pad > 0:
                self.pending[r].append({k: v[0] for k, v in zeros_batch(self.specs, 1, pad).items()})
                self.pending_len[r] += pad
        while self.pending_len.max(initial=0) > 0:
            self._append(min(self.chunk, int(self.pending_len.min())))

    def _append(self, steps: int) -> None:
        batch = {k: np.empty((self.rows, steps, *s), d) for k, (s, d) in self.specs.items()}
        for r in range(self.rows):
            taken = 0
            while taken < steps:
                piece = self.pending[r][0]
                n = next(iter(piece.values())).shape[0]
                use = min(n, steps - taken)
                for k in batch:
                    batch[k][r, taken : taken + use] = piece[k][:use]
                if use == n:
                    self.pending[r].pop(0)
                else:
                    self.pending[r][0] = {k: x[use:] for k, x in piece.items()}
                taken += use
            self.pending_len[r] -= steps
        self.vault.append(unflatten(batch))
        self.written += steps
