"""The on-disk vault format: constants, leaf names, ``metadata.json`` parsing, batch checks.

No I/O happens here; :mod:`marlvault.vault.store` does the reading and writing. See
``docs/FORMAT.md`` for the full specification. A vault looks like this::

    <path or url>/
      metadata.json            # flashbax fields + our keys under "marlvault"
      marlvault.lock           # only while a writer holds the vault (local paths)
      manifest.ocdbt, d/, ...  # one OCDBT database holding zarr v2 arrays:
        observations./         #   (B, CAPACITY, *leaf) per leaf, named "<dotted.path>."
        infos.legals./
        vault_index/           #   (1,) int32: committed time steps
        __marlvault__/episodes/        # (CAPACITY, 6) float64 finished episodes
        __marlvault__/episode_cursor/  # (B + 1, 2) float64 index state
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from marlvault import schema
from marlvault.errors import (
    NotAVaultError,
    SchemaMismatchError,
    VaultCorruptError,
    VaultRangeError,
    VaultVersionError,
)
from marlvault.tree import flatten, unflatten

METADATA_FILE = "metadata.json"
LOCK_FILE = "marlvault.lock"
INDEX_ARRAY = "vault_index"
EPISODES_ARRAY = "__marlvault__/episodes"
CURSOR_ARRAY = "__marlvault__/episode_cursor"
FLASHBAX_VERSION = 1.2
"""The flashbax format version we write (major 1 is what we read)."""
FORMAT_REVISION = 1
"""Revision of our additions (keys under ``"marlvault"``, episode arrays)."""
TIME_CAPACITY = int(10e12)
"""Length of every leaf's time axis, as flashbax uses; chunks beyond the data never exist."""
EPISODE_CAPACITY = int(1e12)
EPISODE_CHUNK = 8192
EPISODE_COLUMNS = ("row", "start", "length", "return", "terminated", "truncated")
RESERVED_KEYS = ("version", "structure_shape", "structure_dtype")
DEFAULT_COMPRESSION: dict[str, Any] = {
    "id": "blosc",
    "cname": "zstd",
    "clevel": 1,
    "shuffle": 2,
}
"""Default zarr compressor (bit-shuffle + zstd 1), chosen with ``bench/vault_io.py --codecs``."""
CHUNK_TARGET_BYTES = 4 << 20
"""Target uncompressed size of one chunk of the largest leaf."""

# Keys the episode index reads (first match wins): the schema's key, then the aliases that
# foreign (flashbax / OG-MARL-era) vaults use; see docs/FORMAT.md.
TERMINAL_KEYS = (schema.TERMINALS, "terminal", "terminated", "dones", "done")
TRUNCATION_KEYS = (schema.TRUNCATIONS, "truncation", "truncated")
REWARD_KEYS = (schema.REWARDS, "reward")

ROW_LENGTHS_KEY = "row_lengths"
"""Key under ``"marlvault"``: ``[B]`` valid steps per row; steps at or beyond are padding."""


def leaf_array_name(key: str) -> str:
    """Array name of a flat leaf key, as flashbax names it (``"infos.legals"`` → ``"infos.legals."``)."""
    return key + "."


@dataclass(frozen=True)
class LeafSpec:
    """One leaf of the experience structure, per time step."""

    key: str
    """Flat dotted key, e.g. ``"infos.legals"``."""
    shape: tuple[int, ...]
    """Per-step shape (without the leading ``(B, T)``)."""
    dtype: np.dtype
    """Element dtype."""

    @property
    def step_bytes(self) -> int:
        """Bytes of one time step of one row."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class VaultMeta:
    """Parsed ``metadata.json``."""

    version: float
    num_rows: int
    leaves: tuple[LeafSpec, ...]  # sorted by key
    raw: dict[str, Any]

    @property
    def ours(self) -> dict[str, Any]:
        """Our keys (empty for vaults written by flashbax)."""
        value = self.raw.get("marlvault")
        return value if isinstance(value, dict) else {}


def build_metadata(
    num_rows: int,
    leaves: tuple[LeafSpec, ...],
    time_len: int,
    ours: dict[str, Any],
    user: dict[str, Any],
) -> dict[str, Any]:
    """The JSON document written to ``metadata.json``.

    Args:
        num_rows: B.
        leaves: the structure.
        time_len: the T written into the ``"(B, T, ...)"`` shape strings (our chunk length).
        ours: the ``"marlvault"`` section.
        user: free top-level keys (as flashbax's ``metadata=``).
    """
    shapes = {leaf.key: str((num_rows, time_len, *leaf.shape)) for leaf in leaves}
    dtypes = {leaf.key: leaf.dtype.name for leaf in leaves}
    return {
        "version": FLASHBAX_VERSION,
        "structure_shape": unflatten(shapes),
        "structure_dtype": unflatten(dtypes),
        **user,
        "marlvault": ours,
    }


def _bad(path: str, what: str) -> NotAVaultError:
    return NotAVaultError(
        f"{path}/{METADATA_FILE}: expected a flashbax/marlvault vault metadata document, {what}; "
        "fix: point at the vault directory itself (the one holding metadata.json)"
    )


MAX_DIM = 2**31 - 1
"""Largest B or per-step dimension accepted from ``metadata.json``."""


def _parse_leaf(path: str, key: str, shape_str: Any, dtype_str: Any) -> tuple[int, LeafSpec]:
    try:
        short = isinstance(shape_str, str) and len(shape_str) <= 1000
        shape = ast.literal_eval(shape_str) if short else None
        dtype = np.dtype(dtype_str)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as err:
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: leaf {key!r} expected shape '(B, T, ...)' and a dtype name, "
            f"found {str(shape_str)[:100]!r} / {str(dtype_str)[:100]!r} ({type(err).__name__}); "
            "fix: restore metadata.json"
        ) from None
    ok = isinstance(shape, tuple) and len(shape) >= 2
    if not ok or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape) or shape[0] < 1:
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: leaf {key!r} expected shape '(B, T, ...)' of integers in "
            f"[0, {MAX_DIM}] (B >= 1), found {str(shape_str)[:100]!r}; fix: restore metadata.json"
        )
    if dtype.kind in "OV":
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: leaf {key!r} expected a numeric dtype name, found "
            f"{dtype_str!r}; fix: restore metadata.json"
        )
    return shape[0], LeafSpec(key=key, shape=tuple(shape[2:]), dtype=dtype)


def _flat_structure(path: str, tree: Any) -> dict[str, Any]:
    """``{"a.b": shape or dtype string}`` of a ``structure_*`` entry (empty unless a dict)."""
    if not isinstance(tree, dict):
        return {}
    try:
        return flatten(tree)
    except SchemaMismatchError as err:
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: expected structure keys without '.', found otherwise "
            f"({err}); fix: restore metadata.json"
        ) from None


def parse_metadata(path: str, data: bytes) -> VaultMeta:
    """Parse and validate ``metadata.json``.

    Raises:
        VaultCorruptError: not valid JSON (e.g. truncated) or inconsistent structure.
        NotAVaultError: JSON, but not vault metadata.
        VaultVersionError: a newer major version.
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: expected a JSON document, found {len(data)} bytes that do "
            f"not parse ({type(err).__name__}: {str(err)[:200]}); fix: restore metadata.json from a copy or recreate the vault"
        ) from None
    if not isinstance(raw, dict) or "version" not in raw or "structure_shape" not in raw:
        raise _bad(path, "found no 'version'/'structure_shape' keys")
    version = raw["version"]
    if not isinstance(version, (int, float)) or isinstance(version, bool):
        raise _bad(path, f"found version {str(version)[:100]!r}")
    if not math.isfinite(version):
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: version expected a number like {FLASHBAX_VERSION}, found "
            f"{version}; fix: restore metadata.json (set \"version\": {FLASHBAX_VERSION})"
        )
    if not 1 <= version < int(FLASHBAX_VERSION // 1) + 1:
        raise VaultVersionError(
            f"{path}/{METADATA_FILE}: expected format version {int(FLASHBAX_VERSION)}.x, found "
            f"{version} ({'written by a newer tool' if version > 1 else 'not a 1.x format'}); "
            "fix: upgrade marlvault, or restore metadata.json if the version is damaged"
        )
    shapes = _flat_structure(path, raw["structure_shape"])
    dtypes = _flat_structure(path, raw.get("structure_dtype"))
    if not shapes or set(shapes) != set(dtypes):
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: expected the same leaves in structure_shape and "
            f"structure_dtype, found {sorted(shapes)} and {sorted(dtypes)}; fix: restore metadata.json"
        )
    rows = set()
    leaves = []
    for key in sorted(shapes):
        b, leaf = _parse_leaf(path, key, shapes[key], dtypes[key])
        rows.add(b)
        leaves.append(leaf)
    if len(rows) != 1:
        raise VaultCorruptError(
            f"{path}/{METADATA_FILE}: expected one B across leaves, found {sorted(rows)}; "
            "fix: restore metadata.json"
        )
    return VaultMeta(version=float(version), num_rows=rows.pop(), leaves=tuple(leaves), raw=raw)


def parse_row_lengths(
    where: str, value: Any, num_rows: int, error: type[Exception] = VaultCorruptError
) -> np.ndarray | None:
    """Validate ``metadata["marlvault"]["row_lengths"]``.

    Args:
        where: the vault path, for messages.
        value: the stored value (``None`` when absent).
        num_rows: B.
        error: the class to raise (corrupt on read, a schema error on create).

    Returns:
        ``[B]`` int64 valid steps per row (not clipped to ``vault_index``), or None when absent.

    Raises:
        ``error``: not a list of B integers >= 0.
    """
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= x <= MAX_DIM
        for x in value
    )
    if not ok or len(value) != num_rows:
        found = f"{len(value)} values {list(value)[:8]}" if isinstance(value, (list, tuple)) else (
            repr(value)
        )
        raise error(
            f"{where}/{METADATA_FILE}: marlvault.{ROW_LENGTHS_KEY} expected a list of {num_rows} "
            f"integers >= 0 and <= {MAX_DIM} (valid steps per row), found {found[:200]}; fix: write one valid length "
            "per row, or drop the key when every row is valid up to vault_index"
        )
    return np.asarray(value, np.int64).reshape(num_rows)


def default_chunk_steps(num_rows: int, leaves: tuple[LeafSpec, ...]) -> int:
    """Time steps per chunk: a power of two so the largest leaf's chunk is ~4 MiB."""
    largest = max(max(leaf.step_bytes for leaf in leaves), 1) * max(num_rows, 1)
    steps = 1
    while steps * 2 * largest <= CHUNK_TARGET_BYTES and steps < 8192:
        steps *= 2
    return steps


def check_batch(
    where: str, leaves: tuple[LeafSpec, ...], num_rows: int, flat: dict[str, Any], steps: int
) -> tuple[dict[str, np.ndarray], int]:
    """Validate a flat batch ``{key: (B, T, ...)}`` for appending to a vault.

    Args:
        where: the vault path, for messages.
        leaves: the vault's structure.
        num_rows: B.
        flat: the batch, flattened.
        steps: the vault's steps so far (the int32 ``vault_index`` must not overflow).

    Returns:
        ``({key: numpy array}, T)``.

    Raises:
        SchemaMismatchError: wrong leaf set, B, shape, dtype or differing T.
        VaultRangeError: more than 2**31 - 1 steps per row in all.
    """
    by_key = {leaf.key: leaf for leaf in leaves}
    want, got = set(by_key), set(flat)
    if want != got:
        raise SchemaMismatchError(
            f"{where}: append expected leaves {sorted(want)}, found {sorted(got)} "
            f"(missing {sorted(want - got)}, extra {sorted(got - want)}); fix: append the "
            "vault's structure (see Vault.structure)"
        )
    out, lengths = {}, set()
    for key, leaf in by_key.items():
        arr = np.asarray(flat[key])
        want_shape = (num_rows, "T", *leaf.shape)
        if (
            arr.ndim != len(leaf.shape) + 2
            or arr.shape[0] != num_rows
            or tuple(arr.shape[2:]) != leaf.shape
        ):
            raise SchemaMismatchError(
                f"{where}: leaf {key!r} expected shape {want_shape}, found {arr.shape}; "
                "fix: give every leaf shape (B, T, *leaf_shape) with the vault's B"
            )
        if arr.dtype != leaf.dtype:
            raise SchemaMismatchError(
                f"{where}: leaf {key!r} expected dtype {leaf.dtype}, found {arr.dtype}; "
                f"fix: cast with .astype({leaf.dtype.name!r})"
            )
        lengths.add(arr.shape[1])
        out[key] = arr
    if len(lengths) != 1:
        raise SchemaMismatchError(
            f"{where}: expected one T (axis 1) across leaves, found {sorted(lengths)}; "
            "fix: append the same number of steps for every leaf"
        )
    length = lengths.pop()
    if steps + length >= 2**31:
        raise VaultRangeError(
            f"{where}: expected at most {2**31 - 1} steps per row (int32 vault_index), "
            f"found {steps + length}; fix: start a new vault"
        )
    return out, length


def select_rows(where: str, rows: Any, num_rows: int) -> Any:
    """A row selection (None, int, slice, sequence) as ``slice(None)`` or ``[B'] int64``.

    Raises:
        VaultRangeError: rows outside ``[0, num_rows)`` or not integers.
    """
    if rows is None:
        return slice(None)
    if isinstance(rows, slice):
        picked = np.arange(num_rows)[rows]
    else:
        picked = np.atleast_1d(np.asarray(rows))
    if picked.dtype.kind not in "iu" or (
        picked.size and (picked.min() < 0 or picked.max() >= num_rows)
    ):
        raise VaultRangeError(
            f"{where}: rows expected integers in [0, {num_rows}), found {rows!r}; "
            "fix: select existing rows"
        )
    return picked.astype(np.int64)


def select_keys(where: str, keys: Any, known: list[str]) -> list[str]:
    """Leaf keys selected by None, a key, a prefix (``"infos"``) or a list of them.

    Raises:
        VaultRangeError: a key that names no leaf.
    """
    if keys is None:
        return list(known)
    keys = [keys] if isinstance(keys, str) else list(keys)
    out = []
    for key in keys:
        hits = [k for k in known if k == key or k.startswith(key + ".")]
        if not hits:
            raise VaultRangeError(
                f"{where}: key {key!r} expected one of {list(known)} (or a prefix), "
                "found no such leaf; fix: use Vault.keys"
            )
        out += [h for h in hits if h not in out]
    return out
