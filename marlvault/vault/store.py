"""The only module that talks to tensorstore: keys and zarr arrays in one OCDBT database.

Locations (local paths, ``s3://bucket/prefix``, ``gs://bucket/prefix``) are parsed and checked
for reachability in :mod:`marlvault.vault.location`; here they become tensorstore specs, a
context with bounded retries, and handles. Storage exceptions become named errors
(:func:`raise_storage`).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tensorstore as ts

from marlvault.errors import (
    InvalidLocationError,
    MarlvaultError,
    NotAVaultError,
    StorageCredentialsError,
    StorageFullError,
    StorageUnreachableError,
    VaultCorruptError,
    VaultError,
    VaultNotFoundError,
    VaultReadOnlyError,
    scrub,
)
from marlvault.vault.location import (
    CONNECT_TIMEOUT_ENV,
    REQUEST_RETRIES_ENV,
    Location,
    check_reachable,
    connect_timeout,
    endpoint_name,
    parse,
    request_retries,
)

_FULL_MARKERS = ("no space left", "file too large", "disk quota", "enospc", "efbig", "edquot")


def parse_location(path_or_url: str | os.PathLike) -> Location:
    """:func:`marlvault.vault.location.parse`, then the spec checked by tensorstore.

    Raises:
        InvalidLocationError: what ``parse`` refuses, or a path/bucket tensorstore refuses.
    """
    location = parse(path_or_url)
    try:
        ts.KvStore.Spec(location.base)
    except ValueError as err:
        raise InvalidLocationError(
            f"{location.display}: expected a valid {location.kind} location, found: {err}; "
            "fix: check the path or URL (bucket names: lower-case letters, digits, '-', '.')"
        ) from None
    return location


def is_storage_full(err: BaseException) -> bool:
    """Whether an exception means the storage is out of space or over a size limit."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    return any(marker in str(err).lower() for marker in _FULL_MARKERS)


_OS_FIXES = (
    (
        (errno.EACCES, errno.EPERM, errno.EROFS),
        ("permission denied", "read-only file system"),
        "permission to write there",
        "choose a writable location or fix its permissions",
    ),
    (
        (errno.ENOTDIR, errno.EEXIST),
        ("not a directory", "file exists"),
        "a directory path",
        "a parent of the path is a file: choose another path",
    ),
    (
        (errno.ENAMETOOLONG,),
        ("file name too long", "name too long"),
        "a name the file system accepts",
        "choose a shorter name (the staging folder adds '.creating-<pid>')",
    ),
    (
        (errno.ENOENT,),
        ("no such file or directory",),
        "an existing parent directory",
        "create the parent directory first",
    ),
)


def raise_storage(err: BaseException, where: str, doing: str) -> None:
    """Re-raise a tensorstore/OS failure as a :class:`VaultError` subclass (never returns).

    Out of space → :class:`StorageFullError`; no permission or a read-only file system →
    :class:`VaultReadOnlyError`; a file where a directory should be → :class:`NotAVaultError`;
    a missing parent → :class:`VaultNotFoundError`; anything else → :class:`VaultError`.
    """
    if isinstance(err, MarlvaultError):  # already named (a vault, location or setting error)
        raise err
    if is_storage_full(err):
        raise StorageFullError(
            f"{where}: ran out of space while {doing} (expected room for the write, found: "
            f"{err}); committed data is unchanged; fix: free space or use a larger volume, "
            "then reopen with mode='a' and append again"
        ) from err
    text = str(err).lower()
    if "unavailable" in text and ("failed to connect" in text or "connection refused" in text):
        raise StorageUnreachableError(
            f"{where}: {doing} expected the writer group's OCDBT coordinator (served by "
            f"process 0) to answer, found: {_one_line(err)}; committed data is unchanged; fix: "
            "process 0 has stopped or is unreachable: check its log, then re-run the same "
            "command with record.resume=true"
        ) from err
    classes = (VaultReadOnlyError, NotAVaultError, VaultError, VaultNotFoundError)
    for cls, (codes, markers, expected, fix) in zip(classes, _OS_FIXES, strict=True):
        if getattr(err, "errno", None) in codes or any(m in text for m in markers):
            raise cls(
                f"{where}: {doing} expected {expected}, found: {_one_line(err)}; fix: {fix}"
            ) from err
    raise VaultError(
        f"{where}: {doing} expected the storage to work, found: {_one_line(err)}; fix: check "
        "the path and the storage, then retry"
    ) from err


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def _make_context(coordinator: str | None = None) -> ts.Context:
    """tensorstore context: fsync'd local writes; object-store retries and curl timeouts bounded.

    With ``coordinator`` (``HOST:PORT`` of a running
    ``tensorstore.ocdbt.DistributedCoordinatorServer``) the OCDBT database is written
    cooperatively by several processes (:mod:`marlvault.vault.shared`).

    tensorstore's defaults retry a failed request 32 times with delays up to 32 s (minutes of
    silence); here ``MARLVAULT_REQUEST_RETRIES`` retries with delays from timeout/10 up to the
    timeout. curl's connect timeout and its stall limit (under 1 byte/s for 3 timeouts) come from
    the same setting unless ``TENSORSTORE_CURL_*`` are set (read when the first request is made).
    """
    timeout = connect_timeout()
    retries = {
        "max_retries": request_retries(),
        "initial_delay": f"{timeout / 10:g}s",
        "max_delay": f"{timeout:g}s",
    }
    os.environ.setdefault("TENSORSTORE_CURL_CONNECT_TIMEOUT_SECONDS", str(max(1, round(timeout))))
    stall = str(max(1, round(3 * timeout)))
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", stall)
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_LIMIT_BYTES", "1")
    spec: dict[str, Any] = {
        "file_io_sync": True,
        "s3_request_retries": retries,
        "gcs_request_retries": retries,
    }
    if coordinator is not None:
        spec["ocdbt_coordinator"] = {"address": coordinator}
    return ts.Context(spec)


_PROBE_FAILURES: tuple[tuple[tuple[str, ...], type[VaultError], str, str], ...] = (
    (
        ("NOT_FOUND", "NoSuchBucket"),
        VaultNotFoundError,
        "the bucket to exist",
        "check the bucket name (or create the bucket)",
    ),
    (
        ("PERMISSION_DENIED", "UNAUTHENTICATED", "AccessDenied", "InvalidAccessKeyId"),
        StorageCredentialsError,
        "access to the bucket",
        "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or Google "
        "application-default credentials) and the bucket's permissions",
    ),
)


def _probe(kv: ts.KvStore, location: Location) -> None:
    """One small request (list ``metadata.json``) so that an endpoint that accepts connections
    but fails or stalls requests ends, after the bounded retries, in one named error."""
    key = "metadata.json"
    try:
        kv.list(ts.KvStore.KeyRange(key, key + "\0")).result()
    except ValueError as err:
        text = scrub(str(err)).partition(" [http_response_body")[0]
        endpoint = endpoint_name(location)
        for markers, kind, expected, fix in _PROBE_FAILURES:
            if any(m in text for m in markers):
                raise kind(
                    f"{location.display}: expected {expected} at {endpoint}, found: {text}; "
                    f"fix: {fix}"
                ) from None
        raise StorageUnreachableError(
            f"{location.display}: expected {endpoint} to answer a request (bounded by "
            f"{CONNECT_TIMEOUT_ENV}={connect_timeout():g} s and {REQUEST_RETRIES_ENV}), found: "
            f"{text}; fix: check that the server works and the bucket exists"
        ) from None


class Store:
    """Keys and zarr arrays of one vault location (one OCDBT database)."""

    def __init__(self, location: Location, coordinator: str | None = None) -> None:
        self.location = location
        self.coordinator = coordinator
        check_reachable(location)
        self.context = _make_context(coordinator)
        self.kv = ts.KvStore.open(location.base, context=self.context).result()
        if location.kind != "file":
            _probe(self.kv, location)
        self._handles: dict[str, ts.TensorStore] = {}

    def refresh(self) -> None:
        """Drop all caches and handles so the next opens see other processes' commits."""
        self.context = _make_context(self.coordinator)
        self.kv = ts.KvStore.open(self.location.base, context=self.context).result()
        self._handles = {}

    def with_coordinator(self, coordinator: str) -> Store:
        """The same location, written through the OCDBT coordinator at ``coordinator``."""
        return Store(self.location, coordinator)

    # --- plain keys -------------------------------------------------------------------------
    def read_key(self, key: str) -> bytes | None:
        """The value of ``key``, or None when absent.

        Raises:
            VaultError: the storage failed (a subclass where the cause is known).
        """
        try:
            result = self.kv.read(key).result()
        except Exception as err:  # mapped to our errors
            raise_storage(err, self.location.display, f"reading {key}")
        return bytes(result.value) if result.state == "value" else None

    def write_key(self, key: str, value: bytes) -> None:
        """Write one key atomically and durably (temp + rename on local disks)."""
        try:
            self.kv.write(key, value).result()
        except Exception as err:  # mapped to our errors
            raise_storage(err, self.location.display, f"writing {key}")

    def delete_key(self, key: str) -> None:
        self.kv.delete_range(ts.KvStore.KeyRange(key, key + "\0")).result()

    def delete_array(self, name: str) -> None:
        """Delete an array of the OCDBT database (metadata and chunks); forget its handle."""
        self._handles.pop(name, None)
        prefix = name + "/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        try:
            db = ts.KvStore.open(
                {"driver": "ocdbt", "base": self.location.base}, context=self.context
            ).result()
            db.delete_range(ts.KvStore.KeyRange(prefix, end)).result()
        except Exception as err:  # mapped to our errors
            raise_storage(err, self.location.display, f"deleting array {name}")

    def has_any_key(self) -> bool:
        """Whether anything at all is stored at the location."""
        if self.location.kind == "file":
            path = self.location.local_path or ""
            return os.path.isdir(path) and bool(os.listdir(path))
        return bool(self.kv.list().result())

    def clear_stale_io_locks(self) -> int:
        """Delete ``*.__lock`` files a killed writer left behind (local vaults, lock held).

        tensorstore's file kvstore writes each key to ``<key>.__lock`` and renames it into
        place; it reopens a leftover ``.__lock`` file without truncating it, so after a SIGKILL
        the next commit of ``manifest.ocdbt`` would carry the stale tail and fail to decode.
        Only call this while holding the writer lock. Returns the number of files removed.
        """
        if self.location.kind != "file":
            return 0
        removed = 0
        for root, _, files in os.walk(self.location.local_path or ""):
            for name in files:
                if name.endswith(".__lock"):
                    try:
                        os.unlink(os.path.join(root, name))
                        removed += 1
                    except FileNotFoundError:
                        continue
        return removed

    # --- arrays (addressed by name; handles stay inside this module) -----------------------
    def _spec(self, name: str) -> dict[str, Any]:
        # A missing chunk is an error on read, never zeros: steps that were never written must
        # not come back as data (writes of partial chunks are unaffected).
        return {
            "driver": "zarr",
            "kvstore": {"driver": "ocdbt", "base": self.location.base, "path": name},
            "fill_missing_data_reads": False,
        }

    def _array(self, name: str) -> ts.TensorStore:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = ts.open(
                self._spec(name), context=self.context, open=True
            ).result()
        return handle

    def open_arrays(self, names: Sequence[str]) -> list[ArrayInfo]:
        """Open several existing arrays concurrently (re-opened after :meth:`refresh`).

        Raises:
            Exception: tensorstore's, when an array is missing or unreadable.
        """
        futures = {n: ts.open(self._spec(n), context=self.context, open=True) for n in names}
        for name, future in futures.items():
            self._handles[name] = future.result()
        return [self.info(n) for n in names]

    def has_arrays(self, names: Sequence[str]) -> bool:
        """Whether every named array exists (opening the ones not open yet)."""
        missing = [n for n in names if n not in self._handles]
        try:
            self.open_arrays(missing)
        except Exception:  # tensorstore raises plain ValueError for missing ones
            return False
        return True

    def info(self, name: str) -> ArrayInfo:
        """Shape, dtype, chunk shape and compressor of an array."""
        arr = self._array(name)
        spec = arr.spec().to_json()
        return ArrayInfo(
            shape=tuple(int(d) for d in arr.shape),
            dtype=np.dtype(arr.dtype.numpy_dtype),
            chunks=tuple(int(d) for d in arr.chunk_layout.write_chunk.shape),
            compressor=spec["metadata"].get("compressor"),
            fill_value=spec["metadata"].get("fill_value"),
        )

    def create_array(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        compressor: dict[str, Any] | None,
        fill_value: float | None = None,
    ) -> None:
        """Create a zarr v2 array (C order; fill value 0 unless ``fill_value`` is given)."""
        spec = self._spec(name)
        spec["metadata"] = {
            "shape": list(shape),
            "chunks": list(chunks),
            "dtype": np.dtype(dtype).str,
            "compressor": compressor,
            "fill_value": _json_fill(fill_value),
            "order": "C",
        }
        self._handles[name] = ts.open(spec, context=self.context, create=True).result()

    def read_array(self, name: str, index: Any = ()) -> np.ndarray:
        """Read ``array[index]`` (small arrays: the vault index, episode rows).

        Raises:
            VaultCorruptError: a chunk cannot be read or decoded.
        """
        try:
            return np.asarray(self._array(name)[index].read().result())
        except Exception as err:  # tensorstore raises plain ValueError
            raise VaultCorruptError(
                f"{self.location.display}: array {name!r} expected readable chunks, found: "
                f"{_one_line(err)}; fix: restore the vault from a copy (`marlvault vault "
                f"verify {self.location.display}` lists what is damaged)"
            ) from None

    # --- chunk keys (listing only, no chunk is read) ----------------------------------------
    def _chunk_range(self, name: str, lead: Sequence[int]) -> ts.KvStore.KeyRange:
        arr = self._array(name)
        sep = arr.spec().to_json()["metadata"].get("dimension_separator", ".")
        prefix = sep.join(str(int(i)) for i in lead)
        if len(lead) == arr.rank:
            return ts.KvStore.KeyRange(prefix, prefix + "\0")
        return ts.KvStore.KeyRange(prefix + sep, prefix + chr(ord(sep) + 1))

    def has_chunks(self, probes: Sequence[tuple[str, Sequence[int]]]) -> list[bool]:
        """Whether a chunk whose grid indices start with ``lead`` is stored, per ``(name, lead)``.

        ``("observations.", (0, 7))`` asks for time chunk 7 of row chunk 0. Lists keys only
        (concurrently), reads no chunk.
        """
        futures = [
            self._array(name).kvstore.list(self._chunk_range(name, lead)) for name, lead in probes
        ]
        return [bool(future.result()) for future in futures]

    def chunk_indices(self, name: str, axis: int) -> np.ndarray:
        """Sorted unique grid indices along ``axis`` of every stored chunk of an array.

        One listing of the array's keys (no chunk is read): for a ``(B, T, ...)`` leaf and
        ``axis=1``, the time chunks that exist.
        """
        arr = self._array(name)
        sep = arr.spec().to_json()["metadata"].get("dimension_separator", ".")
        found = set()
        for key in arr.kvstore.list().result():
            parts = bytes(key).decode("utf-8", "replace").split(sep)
            if len(parts) == arr.rank and parts[axis].isdigit():
                found.add(int(parts[axis]))
        return np.array(sorted(found), np.int64)

    def read_steps(self, reads: Sequence[StepRead]) -> PendingRead:
        """Start reading ``[rows, start:stop]`` of several ``(B, T, ...)`` arrays at once.

        Each read decodes straight into a numpy array allocated here (tensorstore writes into
        it through a zero-copy view): ~1.5x faster than ``TensorStore.read()``, which fills
        an array of its own first (measured on a recorded vault, see ``docs/BENCHMARKS.md``).
        Row selections use outer indexing, except a run of consecutive rows (a dataset share,
        often every row), which is read as a plain slice: ~1.6x less CPU.

        Returns:
            A :class:`PendingRead`; its ``result()`` is one array ``(B', stop - start, ...)``
            per read, in order.
        """
        outs, futures = [], []
        for read in reads:
            arr = self._array(read.name)
            view = _select_rows(arr, read.rows)[:, read.start : read.stop]
            out = np.empty(tuple(view.shape), np.dtype(arr.dtype.numpy_dtype))
            futures.append(ts.array(out, copy=False, write=True).write(view))
            outs.append(out)
        return PendingRead(outs, futures)

    def atomic_write(self, writes: Sequence[tuple[str, Any, np.ndarray]], wait: bool = True) -> Any:
        """Write ``array[index] = value`` for each ``(name, index, value)`` in one atomic commit.

        The values are copied before this returns; with ``wait=False`` the commit (encoding,
        durable writes, manifest) runs in the background and a future with ``result()`` is
        returned, else None.
        """
        txn = ts.Transaction(atomic=True)
        futures = [
            self._array(name).with_transaction(txn)[index].write(value)
            for name, index, value in writes
        ]
        for future in futures:
            future.result()
        commit = txn.commit_async()
        if wait:
            commit.result()
            return None
        return commit

    def write_many(self, writes: Sequence[tuple[str, Any, np.ndarray]]) -> list[Any]:
        """Start ``array[index] = value`` for each ``(name, index, value)``, each its own commit.

        For several processes writing one database through a coordinator, where a commit
        cannot span keys. The values are copied before this returns; the returned futures'
        ``result()`` waits until each write is durable.
        """
        txn = ts.Transaction()  # not atomic: one batch of writes, committed key by key
        futures = [
            self._array(name).with_transaction(txn)[index].write(value)
            for name, index, value in writes
        ]
        for future in futures:
            future.result()
        return [txn.commit_async()]

    def size_on_disk(self) -> int:
        """Total bytes stored at the location."""
        if self.location.kind == "file":
            total = 0
            for root, _, files in os.walk(self.location.local_path or ""):
                for name in files:
                    try:
                        total += os.path.getsize(os.path.join(root, name))
                    except OSError:
                        continue
            return total
        total = 0
        for key in self.kv.list().result():
            value = self.kv.read(key).result().value
            total += len(value)
        return total


@dataclass(frozen=True)
class ArrayInfo:
    """What the vault needs to know of one stored array."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    """Write chunk shape."""
    compressor: dict[str, Any] | None
    """The zarr compressor dict (None: uncompressed)."""
    fill_value: Any = None
    """The zarr fill value as stored in ``.zarray`` (``"NaN"`` for NaN; None: zero)."""


class StepRead(NamedTuple):
    """One ``[rows, start:stop]`` read of a ``(B, T, ...)`` array."""

    name: str
    rows: np.ndarray | None  # [B'] int64 row indices, or None for every row
    start: int
    stop: int


class PendingRead:
    """Reads in flight; :meth:`result` waits for them."""

    def __init__(self, outs: list[np.ndarray], futures: list[Any]) -> None:
        self._outs = outs
        self._futures = futures

    def result(self) -> list[np.ndarray]:
        """One array per read, each ``(B', stop - start, ...)``.

        Raises:
            Exception: tensorstore's, when a chunk cannot be read or decoded.
        """
        for future in self._futures:
            future.result()
        return self._outs


def _select_rows(arr: Any, rows: np.ndarray | None) -> Any:
    """``arr`` restricted to ``rows`` ([B'] int64, None: all): a slice when they are consecutive
    and ascending, else outer indexing."""
    if rows is None:
        return arr
    if rows.size and np.array_equal(rows, np.arange(rows[0], rows[0] + rows.size)):
        return arr[int(rows[0]) : int(rows[0]) + rows.size]
    return arr.oindex[rows]


def _json_fill(value: float | None) -> Any:
    """A zarr v2 ``fill_value`` as JSON (NaN is spelled ``"NaN"``)."""
    return "NaN" if value is not None and math.isnan(value) else value
