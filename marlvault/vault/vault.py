"""The user API: create, open, append, read and stream a vault.

Axis order of every leaf: ``[row, time, ...]`` (``(B, T, ...)``). Rows are independent streams
of continuous experience. Leaves are addressed by flat dotted keys (``"infos.legals"``); the
pytree form is nested dicts. On disk (see ``docs/FORMAT.md``)::

    vault/
      metadata.json         version 1.2, structure_shape/_dtype, ..., "marlvault": {...}
      marlvault.lock        while a writer holds it
      manifest.ocdbt, d/    OCDBT: "<key>." zarr arrays, vault_index, __marlvault__/...

Writes buffer on the host until a chunk along time is full, then write whole chunks of every
leaf concurrently; only then does ``vault_index`` advance (together with the episode index, in
one atomic commit). Readers see ``vault_index`` first, then data: always a consistent prefix.
"""

from __future__ import annotations

import copy
import datetime
import getpass
import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from marlvault.errors import (
    NotAVaultError,
    SchemaMismatchError,
    VaultCorruptError,
    VaultError,
    VaultExistsError,
    VaultNotFoundError,
    VaultRangeError,
    VaultReadOnlyError,
)
from marlvault.tree import flatten, unflatten
from marlvault.vault import episodes as ep
from marlvault.vault import format as fmt
from marlvault.vault.lock import WriterLock
from marlvault.vault.store import Store, parse_location, raise_storage, read_all

CODECS: dict[str, dict[str, Any] | None] = {
    "gzip": {"id": "gzip", "level": 5},
    "zstd": {"id": "zstd", "level": 3},
    "blosc-lz4": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 2},
    "blosc-zstd": {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": 2},
    "none": None,
}
"""Named codecs accepted by ``compression=`` (a zarr v2 compressor dict is accepted too)."""


def _structure_from_example(where: str, example: Any) -> tuple[int, tuple[fmt.LeafSpec, ...]]:
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


def _find_key(keys: Sequence[str], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in keys), None)


class Vault:
    """A flashbax-compatible vault. Use :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(self, store: Store, meta: fmt.VaultMeta, mode: str, lock: WriterLock | None):
        self._store = store
        self._meta = meta
        self._mode = mode
        self._lock = lock
        self._failed: BaseException | None = None
        self._leaves = {leaf.key: leaf for leaf in meta.leaves}
        keys = list(self._leaves)
        self._ep_keys = (
            _find_key(keys, fmt.REWARD_KEYS),
            _find_key(keys, fmt.TERMINAL_KEYS),
            _find_key(keys, fmt.TRUNCATION_KEYS),
        )
        self._open_arrays()
        self._chunk_steps = int(meta.ours.get("chunk_steps") or self._guess_chunk_steps())
        self._cursor: ep.EpisodeCursor | None = None
        self._finished = np.zeros((0, 6))
        self._buffers: dict[str, np.ndarray] | None = None
        self._buf_start = self._committed
        self._buf_len = 0
        self._issued = self._committed  # steps handed to storage (committed or in flight)
        self._inflight: tuple[Any, int] | None = None  # (commit future, its vault_index)
        step_bytes = self.num_rows * sum(leaf.step_bytes for leaf in meta.leaves)
        self._max_block_steps = max(self._chunk_steps, (256 << 20) // max(step_bytes, 1))
        if mode == "a":
            try:
                self._sync_episodes()
                self._load_tail()
            except BaseException:
                self._release()
                raise

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path_or_url: Any,
        example_or_structure: Any,
        *,
        metadata: dict[str, Any] | None = None,
        compression: Any = None,
        chunks: int | None = None,
        exist_ok: bool = False,
        break_lock: bool = False,
    ) -> Vault:
        """Create a vault and open it for appending.

        Args:
            path_or_url: local path, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.
            example_or_structure: pytree whose leaves are arrays or ``jax.ShapeDtypeStruct``
                shaped ``(B, T, ...)``; only shapes and dtypes are used, values are not written.
            metadata: free JSON keys stored at the top of ``metadata.json`` (as flashbax does);
                a ``"marlvault"`` sub-dict is merged into our section (env, scenario, config...).
            compression: a name from :data:`CODECS` or a zarr compressor dict; default blosc-zstd.
            chunks: time steps per chunk; default so the largest leaf's chunk is ~4 MiB.
            exist_ok: open an existing vault with the same structure instead of failing.
            break_lock: take over a leftover writer lock.

        Raises:
            VaultExistsError, NotAVaultError, SchemaMismatchError, VaultLockedError.
        """
        store = Store(parse_location(path_or_url))
        where = store.location.display
        if store.read_key(fmt.METADATA_FILE) is not None:
            if not exist_ok:
                raise VaultExistsError(
                    f"{where}: expected no vault here, found one; fix: pick a new path, open it "
                    "with Vault.open(path, mode='a'), or pass exist_ok=True"
                )
            vault = cls.open(path_or_url, mode="a", break_lock=break_lock)
            vault._check_same_structure(example_or_structure)
            return vault
        if store.has_any_key():
            raise NotAVaultError(
                f"{where}: expected an empty or missing directory to create a vault in, found "
                "other files; fix: choose an empty path"
            )
        num_rows, leaves = _structure_from_example(where, example_or_structure)
        if chunks is not None and (not isinstance(chunks, int) or chunks < 1):
            raise VaultError(
                f"{where}: chunks expected a positive int (time steps), found {chunks!r}"
            )
        user = dict(metadata or {})
        clash = [k for k in fmt.RESERVED_KEYS if k in user]
        if clash:
            raise VaultError(
                f"{where}: metadata keys {clash} are reserved by the format; fix: rename them"
            )
        ours = {
            "format_revision": fmt.FORMAT_REVISION,
            "chunk_steps": chunks or fmt.default_chunk_steps(num_rows, leaves),
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
        return cls._create_arrays(store, num_rows, leaves, ours, user, break_lock)

    @classmethod
    def _create_arrays(cls, store, num_rows, leaves, ours, user, break_lock) -> Vault:
        """Populate a new vault. Local vaults are built in ``<path>.creating-<pid>`` and renamed
        into place, so a crash mid-create never leaves a half-made vault at ``path``."""
        final = store.location
        if final.kind == "file":
            staging = f"{final.display}.creating-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
            store = Store(parse_location(staging))
        lock = WriterLock.acquire(store, break_lock)
        try:
            meta = _populate(store, num_rows, leaves, ours, user)
            if final.kind == "file":
                _rename_into_place(store.location.display, final.display)
                store = Store(final)
                lock.store = store
        except BaseException as err:
            lock.release()
            if isinstance(err, Exception):
                raise_storage(err, final.display, "creating the vault")
            raise
        return cls(store, meta, "a", lock)

    @classmethod
    def open(cls, path_or_url: Any, mode: str = "r", *, break_lock: bool = False) -> Vault:
        """Open an existing vault (ours or flashbax's) for reading (``"r"``) or appending (``"a"``).

        Raises:
            VaultNotFoundError, NotAVaultError, VaultCorruptError, VaultVersionError,
            VaultLockedError (mode ``"a"`` while another writer holds it).
        """
        if mode not in ("r", "a"):
            raise VaultError(f"{path_or_url}: mode expected 'r' or 'a', found {mode!r}")
        store = Store(parse_location(path_or_url))
        where = store.location.display
        raw = store.read_key(fmt.METADATA_FILE)
        if raw is None:
            if store.has_any_key():
                raise NotAVaultError(
                    f"{where}: expected {fmt.METADATA_FILE} and an OCDBT database, found other "
                    "files only; fix: point at the vault directory (e.g. vaults/<name>/<uid>)"
                )
            raise VaultNotFoundError(
                f"{where}: expected a vault, found nothing; fix: check the path or create it "
                "with Vault.create"
            )
        meta = fmt.parse_metadata(where, raw)
        lock = WriterLock.acquire(store, break_lock) if mode == "a" else None
        try:
            if lock is not None:
                store.clear_stale_io_locks()
            return cls(store, meta, mode, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def _open_arrays(self) -> None:
        where = self._store.location.display
        names = [fmt.leaf_array_name(k) for k in self._leaves] + [fmt.INDEX_ARRAY]
        try:
            stores = self._store.open_arrays(names)
        except Exception as err:  # noqa: BLE001
            raise NotAVaultError(
                f"{where}: expected arrays {names} in the OCDBT database, could not open them "
                f"({err}); fix: point at a complete vault"
            ) from None
        self._arrays = dict(zip(self._leaves, stores[:-1], strict=True))
        self._index_store = stores[-1]
        for key, arr in self._arrays.items():
            leaf = self._leaves[key]
            want = (self._meta.num_rows, *leaf.shape)
            got = (arr.shape[0], *arr.shape[2:])
            if got != want or np.dtype(arr.dtype.numpy_dtype) != leaf.dtype:
                raise VaultCorruptError(
                    f"{where}: array {key!r} expected (B, *leaf) {want} {leaf.dtype}, found "
                    f"{got} {arr.dtype.numpy_dtype}; fix: restore metadata.json or the array"
                )
        try:
            self._ep_store, self._cursor_store = self._store.open_arrays(
                [fmt.EPISODES_ARRAY, fmt.CURSOR_ARRAY]
            )
        except Exception:  # noqa: BLE001 - absent in flashbax-written vaults
            self._ep_store = self._cursor_store = None
        self._committed = self._read_index()

    def _read_index(self) -> int:
        value = int(np.asarray(self._index_store.read().result())[0])
        if value < 0:
            raise VaultCorruptError(
                f"{self.path}: vault_index expected >= 0, found {value}; fix: restore the vault"
            )
        return value

    def _guess_chunk_steps(self) -> int:
        largest = max(self._leaves.values(), key=lambda leaf: leaf.step_bytes).key
        return int(self._arrays[largest].chunk_layout.write_chunk.shape[1])

    def _check_same_structure(self, example: Any) -> None:
        rows, leaves = _structure_from_example(self.path, example)
        if rows != self.num_rows or leaves != self._meta.leaves:
            self._release()
            raise SchemaMismatchError(
                f"{self.path}: exist_ok expected the same structure, found B={rows} "
                f"{[(x.key, x.shape, x.dtype.name) for x in leaves]} vs B={self.num_rows} "
                f"{[(x.key, x.shape, x.dtype.name) for x in self._meta.leaves]}; fix: use a new path"
            )

    # --- properties ---------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The vault's path or URL."""
        return self._store.location.display

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def num_rows(self) -> int:
        """B, the number of independent rows."""
        return self._meta.num_rows

    @property
    def num_steps(self) -> int:
        """Time steps per row: committed ones plus (for a writer) those still buffered."""
        return self._buf_start + self._buf_len if self._mode == "a" else self._committed

    @property
    def committed_steps(self) -> int:
        """Time steps durable on storage (the stored ``vault_index``)."""
        return self._committed

    @property
    def chunk_steps(self) -> int:
        return self._chunk_steps

    @property
    def keys(self) -> list[str]:
        """Flat leaf keys, sorted."""
        return list(self._leaves)

    @property
    def flat_structure(self) -> dict[str, jax.ShapeDtypeStruct]:
        """``{"a.b": ShapeDtypeStruct(per-step shape, dtype)}``."""
        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in self._leaves.items()}

    @property
    def structure(self) -> dict[str, Any]:
        """Nested dicts of ``ShapeDtypeStruct`` per time step (no B, T; B is :attr:`num_rows`)."""
        return unflatten(self.flat_structure)

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of ``metadata.json`` (ours under ``"marlvault"``)."""
        return copy.deepcopy(self._meta.raw)

    @property
    def row_lengths(self) -> np.ndarray:
        """``[B]`` int64 valid steps of each row, clipped to :attr:`num_steps`.

        Steps at or beyond a row's valid length are padding (written by ``combine``/``subsample``
        to keep the array dense), not data. From ``metadata["marlvault"]["row_lengths"]``; every
        row is valid up to :attr:`num_steps` when the key is absent (flashbax vaults).

        Raises:
            VaultCorruptError: the stored value is not B integers >= 0.
        """
        stored = fmt.parse_row_lengths(
            self.path, self._meta.ours.get(fmt.ROW_LENGTHS_KEY), self.num_rows
        )
        steps = self.num_steps
        if stored is None:
            return np.full(self.num_rows, steps, np.int64)
        return np.minimum(stored, steps)

    @property
    def has_padding(self) -> bool:
        """Some row is shorter than :attr:`num_steps` (see :attr:`row_lengths`)."""
        return bool((self.row_lengths < self.num_steps).any())

    @property
    def compression(self) -> dict[str, Any] | None:
        """The zarr compressor of the largest leaf."""
        largest = max(self._leaves.values(), key=lambda leaf: leaf.step_bytes).key
        return self._arrays[largest].spec().to_json()["metadata"].get("compressor")

    def size_on_disk(self) -> int:
        """Bytes stored at the vault's location."""
        return self._store.size_on_disk()

    def __repr__(self) -> str:
        return f"Vault({self.path!r}, mode={self._mode!r}, B={self.num_rows}, T={self.num_steps})"

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._release()

    # --- writing ------------------------------------------------------------------------------
    def append(self, batch: Any) -> int:
        """Append ``batch`` (pytree, every leaf ``(B, T, ...)``) along time.

        Returns:
            The new :attr:`num_steps`.

        Raises:
            SchemaMismatchError: wrong leaf set, B, shape or dtype (nothing is written).
            StorageFullError: out of space; committed data is unchanged, reopen to continue.
        """
        self._check_writable()
        flat, length = self._check_batch(batch)
        try:
            self._append_flat(flat, length)
        except Exception as err:  # noqa: BLE001
            self._failed = err
            raise_storage(err, self.path, "appending")
        return self.num_steps

    def _append_flat(self, flat: dict[str, np.ndarray], length: int) -> None:
        steps = self._chunk_steps
        off = 0
        while off < length:
            if self._buf_len == 0 and length - off >= steps:
                n = min(length - off, self._max_block_steps) // steps * steps
                block = {k: v[:, off : off + n] for k, v in flat.items()}
                self._write_block(self._buf_start, block)
                self._buf_start += n
                off += n
                continue
            bufs = self._ensure_buffers()
            n = min(steps - self._buf_len, length - off)
            for key, value in flat.items():
                bufs[key][:, self._buf_len : self._buf_len + n] = value[:, off : off + n]
            self._buf_len += n
            off += n
            if self._buf_len == steps:
                self._write_block(self._buf_start, bufs)
                self._buf_start += steps
                self._buf_len = 0

    def flush(self) -> None:
        """Make every appended step durable (writes a partial chunk if one is buffered)."""
        self._check_writable()
        end = self._buf_start + self._buf_len
        try:
            if end > self._issued:
                lo = self._issued - self._buf_start
                block = {k: v[:, lo : self._buf_len] for k, v in self._ensure_buffers().items()}
                self._write_block(self._issued, block)
            self._wait_inflight()
        except Exception as err:  # noqa: BLE001
            self._failed = err
            raise_storage(err, self.path, "flushing")

    def close(self) -> None:
        """Flush (writers) and release the lock. Idempotent."""
        try:
            if self._mode == "a" and self._lock is not None and not self._lock.released:
                if self._failed is None:
                    self.flush()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _check_writable(self) -> None:
        if self._mode != "a":
            raise VaultReadOnlyError(
                f"{self.path}: expected a vault opened with mode='a', found mode='r'; fix: "
                "Vault.open(path, mode='a')"
            )
        if self._lock is None or self._lock.released:
            raise VaultError(f"{self.path}: the vault is closed; fix: reopen it with mode='a'")
        if self._failed is not None:
            raise VaultError(
                f"{self.path}: an earlier write failed ({self._failed}); committed steps: "
                f"{self._committed}; fix: reopen with mode='a' to continue from there"
            )

    def _check_batch(self, batch: Any) -> tuple[dict[str, np.ndarray], int]:
        flat = flatten(batch)
        want, got = set(self._leaves), set(flat)
        if want != got:
            raise SchemaMismatchError(
                f"{self.path}: append expected leaves {sorted(want)}, found {sorted(got)} "
                f"(missing {sorted(want - got)}, extra {sorted(got - want)}); fix: append the "
                "vault's structure (see Vault.structure)"
            )
        out, lengths = {}, set()
        for key, leaf in self._leaves.items():
            arr = np.asarray(flat[key])
            want_shape = (self.num_rows, "T", *leaf.shape)
            if (
                arr.ndim != len(leaf.shape) + 2
                or arr.shape[0] != self.num_rows
                or tuple(arr.shape[2:]) != leaf.shape
            ):
                raise SchemaMismatchError(
                    f"{self.path}: leaf {key!r} expected shape {want_shape}, found {arr.shape}; "
                    "fix: give every leaf shape (B, T, *leaf_shape) with the vault's B"
                )
            if arr.dtype != leaf.dtype:
                raise SchemaMismatchError(
                    f"{self.path}: leaf {key!r} expected dtype {leaf.dtype}, found {arr.dtype}; "
                    f"fix: cast with .astype({leaf.dtype.name!r})"
                )
            lengths.add(arr.shape[1])
            out[key] = arr
        if len(lengths) != 1:
            raise SchemaMismatchError(
                f"{self.path}: expected one T (axis 1) across leaves, found {sorted(lengths)}; "
                "fix: append the same number of steps for every leaf"
            )
        length = lengths.pop()
        if self.num_steps + length >= 2**31:
            raise VaultRangeError(
                f"{self.path}: expected at most {2**31 - 1} steps per row (int32 vault_index), "
                f"found {self.num_steps + length}; fix: start a new vault"
            )
        return out, length

    def _ensure_buffers(self) -> dict[str, np.ndarray]:
        if self._buffers is None:
            self._buffers = {
                k: np.zeros((self.num_rows, self._chunk_steps, *v.shape), v.dtype)
                for k, v in self._leaves.items()
            }
        return self._buffers

    def _load_tail(self) -> None:
        """Writer reopening mid-chunk: load the committed part of the last chunk into the buffer."""
        self._buf_start = self._committed // self._chunk_steps * self._chunk_steps
        self._buf_len = self._committed - self._buf_start
        if self._buf_len:
            bufs = self._ensure_buffers()
            items = [
                (self._arrays[k], (slice(None), slice(self._buf_start, self._committed)))
                for k in bufs
            ]
            for key, value in zip(bufs, read_all(items), strict=True):
                bufs[key][:, : self._buf_len] = value

    def _write_block(self, start: int, block: dict[str, np.ndarray]) -> None:
        """Write ``block`` (each ``(B, n, ...)``) at ``start`` and advance the index.

        Data chunks, episode rows, the episode cursor and ``vault_index`` go into one atomic
        OCDBT commit: the manifest that makes the new index visible is written only after the
        data files it references are durable. The commit runs in the background while the caller
        goes on; the next block (or ``flush``/``close``) waits for it first, so at most one block
        is in flight and a failure surfaces at that next call.
        """
        self._wait_inflight()
        n = next(iter(block.values())).shape[1]
        cursor = self._cursor if self._cursor is not None else ep.empty_cursor(self.num_rows)
        r, t, tr = (block.get(k) if k else None for k in self._ep_keys)
        rows, cursor = ep.scan_block(cursor, start, r, t, tr)
        writes = [
            (self._arrays[k], (slice(None), slice(start, start + n)), v) for k, v in block.items()
        ]
        writes.append((self._index_store, slice(None), np.array([start + n], np.int32)))
        writes += self._episode_writes(rows, cursor)
        future = self._store.atomic_write(writes, wait=False)
        self._finished = np.concatenate([self._finished, rows]) if len(rows) else self._finished
        self._cursor = cursor
        self._issued = start + n
        self._inflight = (future, start + n)

    def _wait_inflight(self) -> None:
        """Wait for the background commit of the previous block; then it counts as committed."""
        if self._inflight is not None:
            future, steps = self._inflight
            self._inflight = None
            future.result()
            self._committed = steps

    def _episode_writes(self, rows: np.ndarray, cursor: ep.EpisodeCursor) -> list:
        if self._ep_store is None:
            _create_episode_arrays(self._store, self.num_rows)
            self._ep_store, self._cursor_store = self._store.open_arrays(
                [fmt.EPISODES_ARRAY, fmt.CURSOR_ARRAY]
            )
        writes = [(self._cursor_store, slice(None), ep.cursor_to_array(cursor))]
        if len(rows):
            first = cursor.num_episodes - len(rows)
            writes.append((self._ep_store, slice(first, cursor.num_episodes), rows))
        return writes

    # --- reading ------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Reader: see the writer's newer commits. Returns :attr:`num_steps`."""
        if self._mode == "a":
            return self.num_steps
        self._store.refresh()
        self._open_arrays()
        self._cursor = None
        return self.num_steps

    def _range(self, start: int | None, stop: int | None) -> tuple[int, int]:
        if self._mode == "a" and self.num_steps > self._committed:
            self.flush()
        start = 0 if start is None else int(start)
        stop = self._committed if stop is None else int(stop)
        if not 0 <= start <= stop <= self._committed:
            raise VaultRangeError(
                f"{self.path}: read expected 0 <= start <= stop <= {self._committed} (steps), "
                f"found start={start}, stop={stop}; fix: stay within Vault.num_steps"
            )
        return start, stop

    def _rows(self, rows: Any) -> Any:
        if rows is None:
            return slice(None)
        if isinstance(rows, slice):
            picked = np.arange(self.num_rows)[rows]
        else:
            picked = np.atleast_1d(np.asarray(rows))
        if picked.dtype.kind not in "iu" or (
            picked.size and (picked.min() < 0 or picked.max() >= self.num_rows)
        ):
            raise VaultRangeError(
                f"{self.path}: rows expected integers in [0, {self.num_rows}), found {rows!r}; "
                "fix: select existing rows"
            )
        return picked.astype(np.int64)

    def _keys(self, keys: Any) -> list[str]:
        if keys is None:
            return list(self._leaves)
        keys = [keys] if isinstance(keys, str) else list(keys)
        out = []
        for key in keys:
            hits = [k for k in self._leaves if k == key or k.startswith(key + ".")]
            if not hits:
                raise VaultRangeError(
                    f"{self.path}: key {key!r} expected one of {list(self._leaves)} (or a prefix), "
                    "found no such leaf; fix: use Vault.keys"
                )
            out += [h for h in hits if h not in out]
        return out

    def _view(self, key: str, rows: Any, start: int, stop: int) -> Any:
        arr = self._arrays[key]
        if isinstance(rows, np.ndarray):
            return arr.oindex[rows, start:stop]
        return arr[:, start:stop]

    def read_flat(self, start=None, stop=None, rows=None, keys=None) -> dict[str, np.ndarray]:
        """Like :meth:`read` but returns ``{"a.b": array}``."""
        start, stop = self._range(start, stop)
        rows, keys = self._rows(rows), self._keys(keys)
        futures = [self._view(k, rows, start, stop).read() for k in keys]
        try:
            return {k: np.asarray(f.result()) for k, f in zip(keys, futures, strict=True)}
        except Exception as err:  # noqa: BLE001
            raise VaultCorruptError(
                f"{self.path}: reading steps [{start}, {stop}) expected committed chunks, failed: "
                f"{err}; fix: run `marlvault vault verify {self.path}`"
            ) from None

    def read(self, start=None, stop=None, rows=None, keys=None) -> dict[str, Any]:
        """Read committed steps ``[start, stop)`` as host numpy arrays.

        Args:
            start, stop: time-step range; default all committed steps.
            rows: None, an int, a slice or a sequence of row indices.
            keys: None, a flat key (``"infos.legals"``), a prefix (``"infos"``) or a list of them.

        Returns:
            Nested dicts of numpy arrays shaped ``(B', T', ...)``.
        """
        return unflatten(self.read_flat(start, stop, rows, keys))

    def iter_chunks(
        self, steps_per_chunk: int | None = None, rows=None, keys=None, *, flat: bool = False
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Stream committed steps in windows along time, reading one window ahead.

        Yields:
            ``(start, tree)`` with each leaf ``(B', n, ...)``; memory stays ~two windows.
        """
        step = int(steps_per_chunk or self._chunk_steps)
        if step < 1:
            raise VaultRangeError(f"{self.path}: steps_per_chunk expected >= 1, found {step}")
        end = self._range(None, None)[1]
        rows, keys = self._rows(rows), self._keys(keys)

        def issue(a: int) -> list:
            return [self._view(k, rows, a, min(a + step, end)).read() for k in keys]

        pending = issue(0) if end else None
        for a in range(0, end, step):
            current = pending
            pending = issue(a + step) if a + step < end else None
            data = {k: np.asarray(f.result()) for k, f in zip(keys, current, strict=True)}
            yield a, (data if flat else unflatten(data))

    # --- episodes -----------------------------------------------------------------------------
    @property
    def episodes(self) -> np.ndarray:
        """The episode index (:data:`marlvault.vault.episodes.EPISODE_DTYPE`), sorted by (row, start)."""
        self._sync_episodes()
        index = ep.make_index(self._finished, self._cursor)
        lengths = self.row_lengths
        if (lengths >= self._cursor.steps).all():
            return index
        return self._clip_episodes(index, lengths)

    def _clip_episodes(self, index: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Drop episodes that start in a row's padding; cut the one that crosses into it.

        A cut episode is incomplete (its end is not in the vault); its return is recomputed over
        its valid steps only.
        """
        stop_valid = lengths[index["row"]]
        index = index[index["start"] < stop_valid]
        cut = np.flatnonzero(index["start"] + index["length"] > lengths[index["row"]])
        reward_key = self._ep_keys[0]
        for i in cut:
            row, start = int(index["row"][i]), int(index["start"][i])
            stop = int(lengths[row])
            index["length"][i] = stop - start
            index["terminated"][i] = index["truncated"][i] = index["complete"][i] = False
            ret = 0.0
            if reward_key is not None:
                r = self.read_flat(start, stop, rows=[row], keys=[reward_key])[reward_key]
                ret = float(ep._per_step(r, (1, stop - start), "mean").sum())  # noqa: SLF001
            index["return"][i] = ret
        return index

    def _sync_episodes(self) -> None:
        """Load the stored index and extend it over committed steps it does not cover yet."""
        if self._cursor is None:
            if self._cursor_store is not None:
                cursor = ep.cursor_from_array(np.asarray(self._cursor_store.read().result()))
                done = self._ep_store[: cursor.num_episodes].read().result()
                self._finished = np.asarray(done, np.float64)
            else:
                cursor, self._finished = ep.empty_cursor(self.num_rows), np.zeros((0, 6))
            if cursor.steps > self._committed:
                raise VaultCorruptError(
                    f"{self.path}: episode index expected to cover <= {self._committed} steps, "
                    f"found {cursor.steps}; fix: run `marlvault vault verify`"
                )
            self._cursor = cursor
        if self._cursor.steps >= self._committed:
            return
        keys = [k for k in self._ep_keys if k]
        new_rows = []
        stop = self._committed
        for a in range(self._cursor.steps, stop, self._chunk_steps * 16):
            b = min(a + self._chunk_steps * 16, stop)
            data = self.read_flat(a, b, keys=keys) if keys else {}
            r, t, tr = (data.get(k) if k else None for k in self._ep_keys)
            if not keys:
                r = np.zeros((self.num_rows, b - a))
            rows, self._cursor = ep.scan_block(self._cursor, a, r, t, tr)
            new_rows.append(rows)
        self._finished = np.concatenate([self._finished, *new_rows])
        if self._mode == "a":
            writes = [(self._index_store, slice(None), np.array([stop], np.int32))]
            added = np.concatenate(new_rows)
            self._store.atomic_write(writes + self._episode_writes(added, self._cursor))


def _populate(store: Store, num_rows: int, leaves, ours: dict, user: dict) -> fmt.VaultMeta:
    """Create every array, zero the index, then write ``metadata.json`` last."""
    steps, comp = ours["chunk_steps"], ours["compression"]
    for leaf in leaves:
        store.create_array(
            fmt.leaf_array_name(leaf.key),
            (num_rows, fmt.TIME_CAPACITY, *leaf.shape),
            leaf.dtype,
            (num_rows, steps, *leaf.shape),
            comp,
        )
    index = store.create_array(fmt.INDEX_ARRAY, (1,), np.dtype(np.int32), (1,), None)
    _create_episode_arrays(store, num_rows)
    cursor = store.open_array(fmt.CURSOR_ARRAY)
    store.atomic_write(
        [
            (index, slice(None), np.zeros(1, np.int32)),
            (cursor, slice(None), ep.cursor_to_array(ep.empty_cursor(num_rows))),
        ]
    )
    doc = _dumps(fmt.build_metadata(num_rows, leaves, steps, ours, _jsonable(user)))
    store.write_key(fmt.METADATA_FILE, doc)
    return fmt.parse_metadata(store.location.display, doc)


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


def _create_episode_arrays(store: Store, num_rows: int) -> None:
    zstd = {"id": "zstd", "level": 3}
    cols = len(fmt.EPISODE_COLUMNS)
    store.create_array(
        fmt.EPISODES_ARRAY,
        (fmt.EPISODE_CAPACITY, cols),
        np.dtype(np.float64),
        (fmt.EPISODE_CHUNK, cols),
        zstd,
    )
    store.create_array(
        fmt.CURSOR_ARRAY, (num_rows + 1, 2), np.dtype(np.float64), (num_rows + 1, 2), zstd
    )


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


def _dumps(doc: dict[str, Any]) -> bytes:
    import json

    return json.dumps(doc, indent=1).encode("utf-8")
