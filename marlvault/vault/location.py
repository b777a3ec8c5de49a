"""Vault locations: parsing paths and ``s3://`` / ``gs://`` URLs, and bounded reachability checks.

Pure Python (no tensorstore): :mod:`marlvault.vault.store` turns a :class:`Location` into
tensorstore specs and handles. Object-store credentials come from the usual environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]`` for custom endpoints; Google
application-default credentials for ``gs://``) and are never shown in messages. Settings:
``MARLVAULT_CONNECT_TIMEOUT`` (seconds, default 10) and ``MARLVAULT_REQUEST_RETRIES`` (default
6), see ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from marlvault.errors import (
    ConfigError,
    InvalidLocationError,
    StorageCredentialsError,
    StorageUnreachableError,
    scrub,
)


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


def parse(path_or_url: str | os.PathLike) -> Location:
    """Turn a path or ``s3://``/``gs://`` URL into a :class:`Location` (syntax only: the store
    also has tensorstore check the spec, :func:`marlvault.vault.store.parse_location`).

    Raises:
        InvalidLocationError: unsupported scheme, credentials in the URL, no or an invalid bucket
            name (the message never shows URL credentials).
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


# --- connecting: bounded waits before tensorstore is asked anything --------------------------
def env_setting(name: str, default: float, kind: type) -> Any:
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


def request_retries() -> int:
    """How often tensorstore retries a failed object-store request (``MARLVAULT_REQUEST_RETRIES``,
    default 6)."""
    return env_setting(REQUEST_RETRIES_ENV, _DEFAULT_REQUEST_RETRIES, int)


def connect_timeout() -> float:
    """Seconds to wait for an object-store endpoint (``MARLVAULT_CONNECT_TIMEOUT``, default 10)."""
    return env_setting(CONNECT_TIMEOUT_ENV, _DEFAULT_CONNECT_TIMEOUT, float)


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


def endpoint_name(location: Location) -> str:
    """``host:port`` (or the service's host) the location's requests go to, for messages."""
    url = location.base.get("endpoint") or (
        os.environ.get("TENSORSTORE_GCS_HTTP_URL") if location.kind == "gs" else None
    )
    if url:
        return "{}:{}".format(*_endpoint(url, "endpoint"))
    return "s3.amazonaws.com" if location.kind == "s3" else "storage.googleapis.com"
