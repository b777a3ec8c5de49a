"""The only module that talks to tensorstore: locations, keys, zarr arrays in one OCDBT database.

Locations are local paths, ``s3://bucket/prefix`` or ``gs://bucket/prefix``. Object-store
credentials come from the usual environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]`` for custom
endpoints; Google application-default credentials for ``gs://``) and are never logged.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import tensorstore as ts

from marlvault.errors import (
    ConfigError,
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

_FULL_MARKERS = ("no space left", "file too large", "disk quota", "enospc", "efbig", "edquot")


@dataclass(frozen=True)
class Location:
    """Where a vault lives."""

    display: str
    """Path or URL as shown in messages (no credentials)."""
    kind: str
    """``"file"``, ``"s3"`` or ``"gs"``."""
    base: dict[str, Any] = field(hash=False)
    """tensorstore kvstore spec of the vault directory (path ends with ``/``)."""

    @property
    def local_path(self) -> str | None:
        return self.display if self.kind == "file" else None


SCHEMES = ("file", "s3", "gs")
"""URL schemes a vault location may have (a path without ``scheme://`` is local)."""
CONNECT_TIMEOUT_ENV = "MARLVAULT_CONNECT_TIMEOUT"
"""Seconds to wait for an object-store endpoint to accept a connection (default 10)."""
REQUEST_RETRIES_ENV = "MARLVAULT_REQUEST_RETRIES"
"""How often tensorstore retries a failed object-store request (default 6)."""
_DEFAULT_CONNECT_TIMEOUT = 10.0
_DEFAULT_REQUEST_RETRIES = 6
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_GCE_METADATA_HOST = "metadata.google.internal"


def parse_location(path_or_url: str | os.PathLike) -> Location:
    """Turn a path or ``s3://``/``gs://`` URL into a :class:`Location`.

    Raises:
        InvalidLocationError: unsupported scheme, credentials in the URL, no or an invalid bucket
            name, or a path tensorstore refuses (the message never shows URL credentials).
    """
    text = os.fspath(path_or_url)
    match = _SCHEME.match(text)
    scheme = match.group("scheme").lower() if match else "file"
    if scheme not in SCHEMES:
        raise InvalidLocationError(
            f"{scrub(text)}: expected a local path or a URL with scheme "
            f"{', '.join(s + '://' for s in SCHEMES)}; found scheme {scheme!r}; fix: use one of "
            "those (copy other storage locally first)"
        )
    if scheme == "file":
        location = _file_location(text[len("file://") :] if match else text)
    else:
        location = _bucket_location(scheme, text[match.end() :] if match else text)
    try:
        ts.KvStore.Spec(location.base)
    except ValueError as err:
        raise InvalidLocationError(
            f"{location.display}: expected a valid {location.kind} location, found: {err}; "
            "fix: check the path or URL (bucket names: lower-case letters, digits, '-', '.')"
        ) from None
    return location


def _file_location(text: str) -> Location:
    path = os.path.abspath(os.path.expanduser(text))
    return Location(display=path, kind="file", base={"driver": "file", "path": path + "/"})


def _bucket_location(scheme: str, rest: str) -> Location:
    """``s3``/``gs`` location of ``<bucket>/<key>`` (what follows ``scheme://``)."""
    bucket, _, key = rest.partition("/")
    key = key.strip("/")
    prefix = f"{scheme}://"
    if "@" in bucket:
        raise InvalidLocationError(
            f"{prefix}***@{bucket.rpartition('@')[2]}/{key}: expected {prefix}bucket/prefix, "
            "found credentials in the URL (not shown); fix: remove them from the URL and give "
            "them through the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or Google "
            "application-default credentials)"
        )
    if not bucket:
        raise InvalidLocationError(
            f"{prefix}{rest}: expected {prefix}bucket/prefix, found no bucket name; fix: name "
            "the bucket"
        )
    base: dict[str, Any] = {
        "driver": "s3" if scheme == "s3" else "gcs",
        "bucket": bucket,
        "path": f"{key}/" if key else "",
    }
    if scheme == "s3":
        base.update(_s3_options())
    return Location(display=f"{prefix}{bucket}/{key}", kind=scheme, base=base)


def _s3_options() -> dict[str, Any]:
    opts: dict[str, Any] = {"aws_credentials": {"type": "environment"}}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region or endpoint:
        opts["aws_region"] = region or "us-east-1"
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        opts["aws_credentials"] = {"type": "default"}
    return opts


def is_storage_full(err: BaseException) -> bool:
    """Whether an exception means the storage is out of space or over a size limit."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    return any(marker in str(err).lower() for marker in _FULL_MARKERS)


_OS_FIXES = (
    ((errno.EACCES, errno.EPERM, errno.EROFS), ("permission denied", "read-only file system"),
     "permission to write there", "choose a writable location or fix its permissions"),
    ((errno.ENOTDIR, errno.EEXIST), ("not a directory", "file exists"),
     "a directory path", "a parent of the path is a file: choose another path"),
    ((errno.ENAMETOOLONG,), ("file name too long", "name too long"),
     "a name the file system accepts", "choose a shorter name (the staging folder adds "
     "'.creating-<pid>')"),
    ((errno.ENOENT,), ("no such file or directory",),
     "an existing parent directory", "create the parent directory first"),
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


# --- connecting: bounded waits before tensorstore is asked anything --------------------------
def _env_number(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < 0 or (kind is float and value == 0):
        raise ConfigError(
            f"{name}: expected a {'positive number of seconds' if kind is float else 'count >= 0'}"
            f", found {raw!r}; fix: set it to e.g. {kind(default)} or unset it"
        )
    return value


def connect_timeout() -> float:
    """Seconds to wait for an object-store endpoint (``MARLVAULT_CONNECT_TIMEOUT``, default 10)."""
    return _env_number(CONNECT_TIMEOUT_ENV, _DEFAULT_CONNECT_TIMEOUT, float)


def _make_context() -> ts.Context:
    """tensorstore context: fsync'd local writes; object-store retries and curl timeouts bounded.

    tensorstore's defaults retry a failed request 32 times with delays up to 32 s (minutes of
    silence); here ``MARLVAULT_REQUEST_RETRIES`` retries with delays from timeout/10 up to the
    timeout. curl's connect timeout and its stall limit (under 1 byte/s for 3 timeouts) come from
    the same setting unless ``TENSORSTORE_CURL_*`` are set (read when the first request is made).
    """
    timeout = connect_timeout()
    retries = {
        "max_retries": _env_number(REQUEST_RETRIES_ENV, _DEFAULT_REQUEST_RETRIES, int),
        "initial_delay": f"{timeout / 10:g}s",
        "max_delay": f"{timeout:g}s",
    }
    os.environ.setdefault("TENSORSTORE_CURL_CONNECT_TIMEOUT_SECONDS", str(max(1, round(timeout))))
    stall = str(max(1, round(3 * timeout)))
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", stall)
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_LIMIT_BYTES", "1")
    return ts.Context(
        {"file_io_sync": True, "s3_request_retries": retries, "gcs_request_retries": retries}
    )


def _endpoint(url: str, what: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http(s)://host[:port]`` endpoint URL named by ``what``."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise InvalidLocationError(
            f"{what}: expected http(s)://host[:port], found credentials in the URL (not shown); "
            "fix: remove them and set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port < 0:
        raise InvalidLocationError(
            f"{what}: expected http(s)://host[:port], found {scrub(url)!r}; fix: correct it"
        )
    return parts.hostname, port


def _tcp_check(host: str, port: int, where: str, fix: str) -> None:
    """Connect to ``host:port`` within the timeout (interruptible) or raise."""
    timeout = connect_timeout()
    if urllib.request.getproxies().get("https" if port == 443 else "http") and not (
        urllib.request.proxy_bypass(host)
    ):
        return  # through a proxy: tensorstore's bounded retries apply instead
    try:
        address = _resolve(host, port, timeout)
        with socket.create_connection(address, timeout=timeout):
            return
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise StorageUnreachableError(
            f"{where}: expected the endpoint {host}:{port} to accept a connection within "
            f"{timeout:g} s ({CONNECT_TIMEOUT_ENV}), found: {reason}; fix: {fix}"
        ) from None


def _resolve(host: str, port: int, timeout: float) -> tuple[str, int]:
    """First address of ``host:port``, resolved in a helper thread so that a slow resolver is
    bounded by ``timeout`` and Ctrl-C still works."""
    found: list[Any] = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][:2])
        except OSError as err:
            found.append(err)

    thread = threading.Thread(target=lookup, daemon=True, name="marlvault-resolve")
    thread.start()
    thread.join(timeout)
    if not found:
        raise TimeoutError("name resolution timed out")
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


def check_reachable(location: Location) -> None:
    """Fail fast (bounded by :func:`connect_timeout`) when an object store cannot be reached.

    s3 with a custom endpoint (``AWS_ENDPOINT_URL[_S3]``): a TCP connect to it. gs: credentials
    must exist (a file or the GCE metadata server), and a test endpoint
    (``TENSORSTORE_GCS_HTTP_URL``) must accept a connection. Local paths: nothing.

    Raises:
        StorageUnreachableError, StorageCredentialsError, InvalidLocationError.
    """
    if location.kind == "s3" and "endpoint" in location.base:
        host, port = _endpoint(location.base["endpoint"], "AWS_ENDPOINT_URL")
        fix = "start the server or correct AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3"
        _tcp_check(host, port, location.display, fix)
    elif location.kind == "gs":
        _check_gcs_credentials(location.display)
        test_url = os.environ.get("TENSORSTORE_GCS_HTTP_URL")
        if test_url:
            host, port = _endpoint(test_url, "TENSORSTORE_GCS_HTTP_URL")
            _tcp_check(host, port, location.display, "start it or unset TENSORSTORE_GCS_HTTP_URL")


def _gcloud_adc_file() -> str:
    config = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(
        os.path.expanduser("~"), ".config", "gcloud"
    )
    return os.path.join(config, "application_default_credentials.json")


def _check_gcs_credentials(where: str) -> None:
    """Credentials tensorstore's gcs driver finds: a key file, gcloud's ADC file, or GCE's
    metadata server (``GCE_METADATA_ROOT``, else ``metadata.google.internal``; bounded)."""
    key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key_file or os.environ.get("GOOGLE_AUTH_TOKEN_FOR_TESTING"):
        return
    if os.path.isfile(_gcloud_adc_file()):
        return
    root = os.environ.get("GCE_METADATA_ROOT", _GCE_METADATA_HOST)
    host, _, port = root.partition(":")
    fix = (
        "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to "
        "a service-account key file, or run on Google Cloud"
    )
    try:
        _tcp_check(host, int(port or 80), where, fix)
    except (StorageUnreachableError, ValueError):
        raise StorageCredentialsError(
            f"{where}: expected Google credentials (GOOGLE_APPLICATION_CREDENTIALS, "
            f"{_gcloud_adc_file()} or the GCE metadata server {host}), found none within "
            f"{connect_timeout():g} s ({CONNECT_TIMEOUT_ENV}); fix: {fix}"
        ) from None


def _endpoint_name(location: Location) -> str:
    """``host:port`` (or the service's host) the location's requests go to, for messages."""
    url = location.base.get("endpoint") or (
        os.environ.get("TENSORSTORE_GCS_HTTP_URL") if location.kind == "gs" else None
    )
    if url:
        return "{}:{}".format(*_endpoint(url, "endpoint"))
    return "s3.amazonaws.com" if location.kind == "s3" else "storage.googleapis.com"


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
        endpoint = _endpoint_name(location)
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

    def __init__(self, location: Location) -> None:
        self.location = location
        check_reachable(location)
        self.context = _make_context()
        self.kv = ts.KvStore.open(location.base, context=self.context).result()
        if location.kind != "file":
            _probe(self.kv, location)
        self._handles: dict[str, ts.TensorStore] = {}

    def refresh(self) -> None:
        """Drop all caches and handles so the next opens see other processes' commits."""
        self.context = _make_context()
        self.kv = ts.KvStore.open(self.location.base, context=self.context).result()
        self._handles = {}

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
        return ArrayInfo(
            shape=tuple(int(d) for d in arr.shape),
            dtype=np.dtype(arr.dtype.numpy_dtype),
            chunks=tuple(int(d) for d in arr.chunk_layout.write_chunk.shape),
            compressor=arr.spec().to_json()["metadata"].get("compressor"),
        )

    def create_array(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        compressor: dict[str, Any] | None,
    ) -> None:
        """Create a zarr v2 array (fill value 0, C order)."""
        spec = self._spec(name)
        spec["metadata"] = {
            "shape": list(shape),
            "chunks": list(chunks),
            "dtype": np.dtype(dtype).str,
            "compressor": compressor,
            "fill_value": None,
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
        Row selections use outer indexing.

        Returns:
            A :class:`PendingRead`; its ``result()`` is one array ``(B', stop - start, ...)``
            per read, in order.
        """
        outs, futures = [], []
        for read in reads:
            arr = self._array(read.name)
            rows = arr.oindex[read.rows] if read.rows is not None else arr
            view = rows[:, read.start : read.stop]
            out = np.empty(tuple(view.shape), np.dtype(arr.dtype.numpy_dtype))
            futures.append(ts.array(out, copy=False, write=True).write(view))
            outs.append(out)
        return PendingRead(outs, futures)

    def atomic_write(
        self, writes: Sequence[tuple[str, Any, np.ndarray]], wait: bool = True
    ) -> Any:
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
