"""Bounds before use: what keeps a damaged vault from being read as data.

Every number a vault stores and the code later uses as a size, a range or an index
(``metadata.json`` fields, ``vault_index``, the episode cursor and rows, chunk shapes) is checked
here first, so a corrupt value gives a :class:`VaultCorruptError` (path, expected, found, fix)
instead of zeros returned as data, a scan proportional to the bad number, or a C++ allocation
failure. ``vault_index`` is checked against the chunks that exist by listing keys (the chunk
holding the last committed step of every leaf must be stored), and, inside that chunk, against
the NaN fill of ``terminals`` (one small chunk is read). See
``docs/RELIABILITY.md`` (*Vault faults and corrupt data*) for what is and is not promised.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from marlvault import schema
from marlvault.errors import NotAVaultError, VaultCorruptError, VaultError, VaultNotFoundError
from marlvault.vault import episodes as ep
from marlvault.vault import format as fmt
from marlvault.vault.store import ArrayInfo, Store, parse_location, raise_storage

MAX_CHUNK_BYTES = 1 << 30
"""Largest uncompressed chunk a vault may have (create refuses more, open reports more)."""
MANIFEST_KEY = "manifest.ocdbt"
_RESTORE = "restore the vault from a copy"


def _corrupt(where: str, what: str, expected: str, found: Any, fix: str = _RESTORE) -> Exception:
    return VaultCorruptError(f"{where}: {what} expected {expected}, found {found}; fix: {fix}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# --- locations --------------------------------------------------------------------------------
def open_store(path_or_url: Any) -> Store:
    """The :class:`Store` of a path or URL; an empty path is refused (it is not ``"."``).

    Raises:
        VaultNotFoundError: an empty path.
        VaultError: a path the storage rejects (e.g. a NUL character).
    """
    text = os.fspath(path_or_url) if isinstance(path_or_url, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text.strip():
        raise VaultNotFoundError(
            f"{path_or_url!r}: expected a vault path or URL, found an empty or missing one; "
            "fix: pass the vault directory (e.g. vaults/<name>/<uid>; '.' for the current one)"
        )
    try:
        return Store(parse_location(text))
    except Exception as err:  # tensorstore rejects some paths with ValueError
        raise_storage(err, text, "opening the location")
        raise  # unreachable: raise_storage always raises


def missing_error(store: Store) -> VaultError:
    """The error for a location without ``metadata.json``: a file, other files or nothing."""
    where = store.location.display
    local = store.location.local_path
    if local is not None and os.path.lexists(local) and not os.path.isdir(local):
        return NotAVaultError(
            f"{where}: expected a vault folder holding {fmt.METADATA_FILE}, found that the path "
            "is a file, not a vault folder; fix: pass the vault's directory"
        )
    if store.has_any_key():
        return NotAVaultError(
            f"{where}: expected {fmt.METADATA_FILE} and an OCDBT database, found other files "
            "only; fix: point at the vault directory (e.g. vaults/<name>/<uid>)"
        )
    return VaultNotFoundError(
        f"{where}: expected a vault, found nothing; fix: check the path or create it with "
        "Vault.create"
    )


# --- arrays and chunking ------------------------------------------------------------------------
def open_arrays(store: Store, meta: fmt.VaultMeta) -> dict[str, ArrayInfo]:
    """Open every leaf array and ``vault_index``; check them against ``metadata.json``.

    Returns:
        ``{array name: ArrayInfo}``.

    Raises:
        NotAVaultError: no OCDBT database. VaultCorruptError: arrays missing, unreadable or
        disagreeing with the metadata, or a chunk above :data:`MAX_CHUNK_BYTES`.
    """
    where = store.location.display
    names = [fmt.leaf_array_name(leaf.key) for leaf in meta.leaves] + [fmt.INDEX_ARRAY]
    try:
        infos = dict(zip(names, store.open_arrays(names), strict=True))
    except Exception as err:  # tensorstore raises plain ValueError
        if store.read_key(MANIFEST_KEY) is None:
            raise NotAVaultError(
                f"{where}: expected arrays {names} in an OCDBT database, found no "
                f"{MANIFEST_KEY}; fix: point at a complete vault"
            ) from None
        raise _corrupt(where, f"arrays {names}", "to open", f"an error ({_brief(err)})") from None
    for leaf in meta.leaves:
        info = infos[fmt.leaf_array_name(leaf.key)]
        want = (meta.num_rows, *leaf.shape)
        got = (info.shape[0], *info.shape[2:])
        if got != want or info.dtype != leaf.dtype:
            raise _corrupt(
                where,
                f"array {leaf.key!r}",
                f"(B, *leaf) {want} {leaf.dtype}",
                f"{got} {info.dtype}",
                "restore metadata.json or the array",
            )
        size = math.prod(info.chunks) * info.dtype.itemsize
        if len(info.chunks) < 2 or size > MAX_CHUNK_BYTES:
            raise _corrupt(
                where,
                f"array {leaf.key!r}",
                f"chunks of at most {MAX_CHUNK_BYTES} bytes",
                f"chunks {list(info.chunks)} ({size} bytes)",
            )
    index = infos[fmt.INDEX_ARRAY]
    if index.shape != (1,) or index.dtype.kind not in "iu":
        raise _corrupt(where, fmt.INDEX_ARRAY, "shape (1,) int32", f"{index.shape} {index.dtype}")
    return infos


def _brief(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def chunk_steps(where: str, meta: fmt.VaultMeta, infos: dict[str, ArrayInfo]) -> int:
    """Time steps per chunk: the stored arrays' time chunk, which ``chunk_steps`` must equal."""
    largest = max(meta.leaves, key=lambda leaf: leaf.step_bytes)
    actual = infos[fmt.leaf_array_name(largest.key)].chunks[1]
    value = meta.ours.get("chunk_steps")
    if value is not None and not (_is_int(value) and value == actual):
        raise _corrupt(
            f"{where}/{fmt.METADATA_FILE}",
            "marlvault.chunk_steps",
            f"{actual} (the time chunk of the stored arrays)",
            repr(value)[:100],
            f"set it to {actual} in {fmt.METADATA_FILE}",
        )
    return actual


# --- vault_index against the chunks that exist ---------------------------------------------------
def read_index(store: Store, infos: dict[str, ArrayInfo]) -> int:
    """``vault_index``, checked against the stored chunks (listing keys) and the last one's fill.

    Raises:
        VaultCorruptError: a negative index, one beyond the data of some leaf, or no stored
            index while leaf data exists.
    """
    where = store.location.display
    leaves = [(n, info.chunks[1]) for n, info in infos.items() if n != fmt.INDEX_ARRAY]
    if not store.has_chunks([(fmt.INDEX_ARRAY, (0,))])[0]:  # never written: 0 steps
        if any(store.has_chunks([(name, (0, 0)) for name, _ in leaves])):
            raise _corrupt(
                where,
                fmt.INDEX_ARRAY,
                "a stored value",
                "none while leaf chunks exist",
                f"{_RESTORE} (or rewrite vault_index with tensorstore)",
            )
        return 0
    value = int(store.read_array(fmt.INDEX_ARRAY)[0])
    if value < 0:
        raise _corrupt(where, fmt.INDEX_ARRAY, ">= 0", value)
    if value == 0:
        return 0
    probes = [
        (name, (r, (value - 1) // chunk))
        for name, chunk in leaves
        for r in range(_row_chunks(infos[name]))
    ]  # every row chunk: a writer group's processes each write their own
    for (name, _), ok in zip(probes, store.has_chunks(probes), strict=True):
        if not ok:
            chunk = infos[name].chunks[1]
            found = _contiguous_chunks(store.chunk_indices(name, 1)) * chunk
            raise _corrupt(
                where,
                f"{fmt.INDEX_ARRAY} says {value} steps:",
                f"array {name!r} to hold data up to step {value - 1}",
                f"its stored chunks end at step {min(found, value)} (the last step found is "
                f"{min(found, value) - 1}; the rest was never written)",
                f"{_RESTORE}; steps before {min(found, value)} are intact (rewriting "
                f"vault_index to {min(found, value)} recovers them)",
            )
    check_tail_written(store, infos, value)
    return value


def _row_chunks(info: ArrayInfo) -> int:
    """Chunks along the row axis (1 unless a writer group wrote the vault)."""
    return -(-info.shape[0] // max(info.chunks[0], 1))


def check_tail_written(store: Store, infos: dict[str, ArrayInfo], value: int) -> None:
    """Steps ``[.., value)`` of the last stored chunk were written (reads that one chunk).

    Vaults created by marlvault fill their float ``terminals`` array with NaN, a value no step
    ever writes, so a ``vault_index`` pointing past the data *inside* a stored chunk (which a
    listing cannot see: chunks are stored whole) shows as NaN there. Vaults without that fill
    (flashbax's own) are not checked this way.

    Raises:
        VaultCorruptError: an unwritten step below ``value``.
    """
    info = infos.get(fmt.leaf_array_name(schema.TERMINALS))
    if info is None or not _is_nan_fill(info.fill_value):
        return
    chunk = info.chunks[1]
    start = (value - 1) // chunk * chunk
    name = fmt.leaf_array_name(schema.TERMINALS)
    tail = store.read_array(name, (slice(None), slice(start, value)))  # [B, t, *leaf]
    unwritten = np.isnan(tail.reshape(tail.shape[0], tail.shape[1], -1)).any(axis=(0, 2))
    if not unwritten.any():
        return
    found = start + int(np.argmax(unwritten))
    raise _corrupt(
        store.location.display,
        f"{fmt.INDEX_ARRAY} says {value} steps:",
        f"every step below {value} written",
        f"steps from {found} on were never written (the last step found is {found - 1})",
        f"{_RESTORE}; steps before {found} are intact (rewriting vault_index to {found} "
        "recovers them)",
    )


def _is_nan_fill(fill: Any) -> bool:
    return fill == "NaN" or (isinstance(fill, float) and math.isnan(fill))


def _contiguous_chunks(indices: np.ndarray) -> int:
    """How many chunks ``0, 1, …`` are stored without a gap (``indices`` sorted, unique)."""
    gaps = np.flatnonzero(indices != np.arange(len(indices)))
    return int(gaps[0]) if gaps.size else len(indices)


def missing_chunks(store: Store, name: str, steps: int) -> str | None:
    """For ``verify``: a problem line when a time chunk of ``name`` below ``steps`` is missing."""
    chunk = store.info(name).chunks[1]
    need = -(-steps // chunk)
    indices = store.chunk_indices(name, 1)
    have = _contiguous_chunks(indices[indices < need])
    if have >= need:
        return None
    return (
        f"{name}: expected stored chunks for steps [0, {steps}), found time chunk {have} "
        f"(steps [{have * chunk}, {(have + 1) * chunk})) missing: it reads as zeros; "
        f"fix: {_RESTORE}"
    )


# --- the episode index -----------------------------------------------------------------------------
def load_episodes(
    store: Store, num_rows: int, committed: int
) -> tuple[ep.EpisodeCursor, np.ndarray]:
    """The stored cursor and finished episodes ``[K, 6]``, every bound checked before use."""
    where = store.location.display
    cursor = _check_cursor(where, store.read_array(fmt.CURSOR_ARRAY), num_rows, committed)
    count = cursor.num_episodes
    if count == 0:
        return cursor, np.zeros((0, len(fmt.EPISODE_COLUMNS)))
    if not store.has_chunks([(fmt.EPISODES_ARRAY, ((count - 1) // fmt.EPISODE_CHUNK,))])[0]:
        raise _corrupt(
            where,
            fmt.EPISODES_ARRAY,
            f"{count} stored episodes (the cursor's count)",
            "their chunks missing",
            f"{_RESTORE}, or delete {fmt.CURSOR_ARRAY}",
        )
    rows = np.asarray(store.read_array(fmt.EPISODES_ARRAY, slice(0, count)), np.float64)
    _check_rows(where, rows, num_rows, cursor.steps)
    return cursor, rows


def _check_cursor(where: str, arr: np.ndarray, num_rows: int, committed: int) -> ep.EpisodeCursor:
    what = fmt.CURSOR_ARRAY
    if arr.shape != (num_rows + 1, 2):
        raise _corrupt(where, what, f"shape ({num_rows + 1}, 2)", arr.shape)
    counts = np.concatenate([arr[0], arr[1:, 0]])
    if not np.isfinite(arr).all() or (counts != np.round(counts)).any():
        raise _corrupt(where, what, "finite values, whole numbers of steps", arr[:4].tolist())
    count, steps = int(arr[0, 0]), int(arr[0, 1])
    if not 0 <= steps <= committed:
        raise _corrupt(
            where,
            "episode index",
            f"to cover between 0 and {committed} steps",
            steps,
            f"run `marlvault vault verify {where}`, then {_RESTORE}",
        )
    if not 0 <= count <= steps * num_rows:
        raise _corrupt(where, what, f"0..{steps * num_rows} finished episodes", count)
    starts = arr[1:, 0]
    if ((starts < 0) | (starts > steps)).any():
        raise _corrupt(where, what, f"open episode starts in [0, {steps}]", starts[:8].tolist())
    return ep.cursor_from_array(arr)


def _check_rows(where: str, rows: np.ndarray, num_rows: int, steps: int) -> None:
    """Finished episodes ``[K, 6]``: ``row, start, length, return, terminated, truncated``."""
    row, start, length, _, term, trunc = rows.T
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(rows).all(axis=1)
        bad |= (row < 0) | (row >= num_rows) | (row != np.round(row))
        bad |= (start < 0) | (length < 1) | (start + length > steps)
        bad |= (start != np.round(start)) | (length != np.round(length))
        bad |= ~np.isin(term, (0, 1)) | ~np.isin(trunc, (0, 1)) | (term + trunc > 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _corrupt(
            where,
            fmt.EPISODES_ARRAY,
            f"rows [row < {num_rows}, start >= 0, length >= 1, end <= {steps}, finite return, "
            "0/1 flags]",
            f"{int(bad.sum())} bad rows (first: {first}: {rows[first].tolist()})",
        )
