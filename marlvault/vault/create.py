"""Creating a vault: structure from an example pytree, codec, staged build, metadata last.

A new local vault is built in ``<path>.creating-<pid>`` and renamed into place, so a crash
mid-create never leaves a half-made vault at ``path``. Inside, every array and the zeroed
``vault_index`` exist before ``metadata.json`` (what makes it a vault) is written::

    <path>/
      metadata.json      written last
      marlvault.lock     held by the creating writer
      manifest.ocdbt, d/ leaf arrays "<key>." (B, CAPACITY, *leaf), vault_index = 0,
                         __marlvault__/episodes, __marlvault__/episode_cursor (empty)
"""

from __future__ import annotations

import copy
import datetime
import getpass
import json
import os
import shutil
import socket
from typing import Any

import numpy as np

from marlvault import schema
from marlvault.errors import NotAVaultError, SchemaMismatchError, VaultError, VaultExistsError
from marlvault.tree import flatten
from marlvault.vault import episodes as ep
from marlvault.vault import format as fmt
from marlvault.vault import guard
from marlvault.vault.episode_log import create_arrays as create_episode_arrays
from marlvault.vault.lock import WriterLock
from marlvault.vault.shared import WRITERS_KEY, WriterGroup, writers_section
from marlvault.vault.store import Store, parse_location, raise_storage

CODECS: dict[str, dict[str, Any] | None] = {
    "gzip": {"id": "gzip", "level": 5},
    "zstd": {"id": "zstd", "level": 3},
    "blosc-lz4": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 2},
    "blosc-zstd": {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": 2},
    "none": None,
}
"""Named codecs accepted by ``compression=`` (a zarr v2 compressor dict is accepted too)."""


def structure_from_example(where: str, example: Any) -> tuple[int, tuple[fmt.LeafSpec, ...]]:
    """B and the per-step leaves of an example pytree whose leaves are shaped ``(B, T, ...)``.

    Raises:
        SchemaMismatchError: no leaves, a leaf without ``(B, T)`` axes, or differing B.
    """
    flat = flatten(example)
    if not flat:
        raise SchemaMismatchError(f"{where}: expected at least one leaf in the example, found none")
    rows, leaves = set(), []
    for key in sorted(flat):
        shape, dtype = tuple(flat[key].shape), np.dtype(flat[key].dtype)
        if len(shape) < 2:
            raise SchemaMismatchError(
                f"{where}: leaf {key!r} expected shape (B, T, ...), found {shape}; fix: add the "
                "row and time axes"
            )
        rows.add(shape[0])
        leaves.append(fmt.LeafSpec(key, shape[2:], dtype))
    if len(rows) != 1:
        raise SchemaMismatchError(
            f"{where}: expected one B (axis 0) for all leaves, found {sorted(rows)}; fix: give "
            "every leaf the same number of rows"
        )
    return rows.pop(), tuple(leaves)


def _compressor(where: str, compression: Any) -> dict[str, Any] | None:
    if compression is None:
        return dict(fmt.DEFAULT_COMPRESSION)
    if isinstance(compression, dict):
        return dict(compression)
    if isinstance(compression, str) and compression in CODECS:
        return copy.deepcopy(CODECS[compression])
    raise VaultError(
        f"{where}: compression expected one of {sorted(CODECS)} or a zarr compressor dict, "
        f"found {compression!r}"
    )


def our_section(
    where: str,
    num_rows: int,
    leaves: tuple[fmt.LeafSpec, ...],
    user: dict[str, Any],
    compression: Any,
    chunks: int | None,
    row_chunk: int | None = None,
) -> dict[str, Any]:
    """The ``"marlvault"`` section of a new vault (pops ``user["marlvault"]`` into it).

    ``row_chunk``: rows per chunk (default all ``num_rows``; a writer group's rows per process).

    Raises:
        VaultError: bad ``chunks``/``compression`` or reserved keys in ``user``.
        SchemaMismatchError: a bad ``row_lengths`` in ``user["marlvault"]``.
    """
    if chunks is not None and (type(chunks) is not int or chunks < 1):
        raise VaultError(
            f"{where}: chunks expected a positive int (time steps), found {chunks!r}; fix: pass "
            "e.g. chunks=64, or leave it out for the default"
        )
    clash = [k for k in fmt.RESERVED_KEYS if k in user]
    if clash:
        raise VaultError(
            f"{where}: metadata keys {clash} are reserved by the format; fix: rename them"
        )
    steps = chunks or fmt.default_chunk_steps(row_chunk or num_rows, leaves)
    _check_chunk_bytes(where, row_chunk or num_rows, leaves, steps)
    ours = {
        "format_revision": fmt.FORMAT_REVISION,
        "chunk_steps": steps,
        "compression": _compressor(where, compression),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "creator": _creator(),
        **user.pop("marlvault", {}),
    }
    lengths = fmt.parse_row_lengths(
        where, ours.get(fmt.ROW_LENGTHS_KEY), num_rows, SchemaMismatchError
    )
    if lengths is not None:
        ours[fmt.ROW_LENGTHS_KEY] = lengths.tolist()
    return ours


def _check_chunk_bytes(
    where: str, num_rows: int, leaves: tuple[fmt.LeafSpec, ...], steps: int
) -> None:
    """Refuse chunks whose largest one would exceed :data:`guard.MAX_CHUNK_BYTES`."""
    largest = max(leaf.step_bytes for leaf in leaves) * num_rows
    if largest * steps > guard.MAX_CHUNK_BYTES:
        fit = max(guard.MAX_CHUNK_BYTES // max(largest, 1), 0)
        raise VaultError(
            f"{where}: chunks expected at most {guard.MAX_CHUNK_BYTES} bytes per chunk of the "
            f"largest leaf ({largest} bytes per step for B={num_rows}), found {steps} steps = "
            f"{largest * steps} bytes; fix: "
            + (f"pass chunks <= {fit}" if fit else "use fewer rows or smaller leaves")
        )


def create_vault(
    store: Store,
    example: Any,
    metadata: dict[str, Any] | None,
    compression: Any,
    chunks: int | None,
    break_lock: bool,
    group: WriterGroup | None = None,
) -> tuple[Store, fmt.VaultMeta, WriterLock]:
    """Build a new vault at ``store`` (which must hold nothing) and hold its writer lock.

    With ``group`` (its leader creates the vault): chunks of ``B/P`` rows, no stored episode
    index (readers compute it), ``metadata["marlvault"]["writers"]``, and the group's lock.

    Returns:
        The store of the final location, the parsed metadata and the held lock.

    Raises:
        NotAVaultError: the location holds other files.
        SchemaMismatchError, VaultError: see :func:`structure_from_example`, :func:`our_section`.
        VaultExistsError: something appeared at the path while building.
    """
    where = store.location.display
    if store.has_any_key():
        raise NotAVaultError(
            f"{where}: expected an empty or missing directory to create a vault in, found "
            "other files; fix: choose an empty path"
        )
    num_rows, leaves = structure_from_example(where, example)
    user = dict(metadata or {})
    row_chunk = None
    if group is not None:
        lo, hi = group.rows(num_rows)
        row_chunk = hi - lo
        user.setdefault("marlvault", {})[WRITERS_KEY] = writers_section(
            group.num_processes, num_rows
        )
    ours = our_section(where, num_rows, leaves, user, compression, chunks, row_chunk)
    final = store.location
    staging = f"{final.display}.creating-{os.getpid()}" if final.kind == "file" else None
    try:
        if staging is not None:
            store = _make_staging(staging)
        lock = WriterLock.acquire(store, break_lock, group)
    except Exception as err:  # mapped to our errors
        _remove_staging(staging)
        raise_storage(err, final.display, "creating the vault")
    try:
        meta = _populate(store, num_rows, leaves, ours, user, row_chunk)
        if staging is not None:
            _rename_into_place(staging, final.display)
            store = Store(final)
            lock.store = store
    except BaseException as err:
        lock.release()
        _remove_staging(staging)
        if isinstance(err, Exception):
            raise_storage(err, final.display, "creating the vault")
        raise
    return store, meta, lock


def _make_staging(staging: str) -> Store:
    """An empty staging folder ``<path>.creating-<pid>`` and its store."""
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    return Store(parse_location(staging))


def _remove_staging(staging: str | None) -> None:
    """Remove what a failed create staged (nothing when it was already renamed into place)."""
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def _fill_value(leaf: fmt.LeafSpec) -> float | None:
    """NaN for a float ``terminals`` leaf (never a valid flag): steps that were never written
    read as NaN there, so an index pointing past the data inside a stored chunk is caught
    (:func:`marlvault.vault.guard.check_tail_written`). Zero (zarr's default) elsewhere."""
    if leaf.key == schema.TERMINALS and leaf.dtype.kind == "f":
        return float("nan")
    return None


def _populate(
    store: Store, num_rows: int, leaves, ours: dict, user: dict, row_chunk: int | None = None
) -> fmt.VaultMeta:
    """Create every array, zero the index, then write ``metadata.json`` last.

    ``row_chunk`` (a writer group's rows per process) also means: no stored episode index.
    """
    steps, comp = ours["chunk_steps"], ours["compression"]
    for leaf in leaves:
        store.create_array(
            fmt.leaf_array_name(leaf.key),
            (num_rows, fmt.TIME_CAPACITY, *leaf.shape),
            leaf.dtype,
            (row_chunk or num_rows, steps, *leaf.shape),
            comp,
            fill_value=_fill_value(leaf),
        )
    store.create_array(fmt.INDEX_ARRAY, (1,), np.dtype(np.int32), (1,), None)
    writes = [(fmt.INDEX_ARRAY, slice(None), np.zeros(1, np.int32))]
    if row_chunk is None:
        create_episode_arrays(store, num_rows)
        cursor = ep.cursor_to_array(ep.empty_cursor(num_rows))
        writes.append((fmt.CURSOR_ARRAY, slice(None), cursor))
    store.atomic_write(writes)
    doc = fmt.build_metadata(num_rows, leaves, steps, ours, _jsonable(user))
    raw = json.dumps(doc, indent=1).encode("utf-8")
    store.write_key(fmt.METADATA_FILE, raw)
    return fmt.parse_metadata(store.location.display, raw)


def _rename_into_place(staging: str, final: str) -> None:
    """Atomically move the staged directory to ``final`` (an absent or empty directory)."""
    try:
        os.rename(staging, final)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise VaultExistsError(
            f"{final}: expected an absent or empty directory to create the vault in, found "
            f"something else appeared meanwhile ({err.strerror}); fix: choose a new path"
        ) from None
    fd = os.open(os.path.dirname(final) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _creator() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("marlvault")
    except PackageNotFoundError:
        ver = "unknown"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"package": "marlvault", "version": ver, "host": socket.gethostname(), "user": user}


def _jsonable(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(v) for v in tree]
    if isinstance(tree, (bool, str, int, float, type(None))):
        return tree
    if isinstance(tree, np.generic):
        return tree.item()
    return str(tree)
