"""Servers on 127.0.0.1 for the storage-URL tests: a closed port, an HTTP server that fails every
request, one that accepts connections and never answers, and moto's S3. Nothing else is ever
contacted (every test environment points endpoints and credential servers here)."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = "MARKER-s3cr3t-7f3a9c"
"""A secret that must never appear in any output."""

_CLEARED = ("AWS_", "GOOGLE_", "GCE_", "CLOUDSDK_", "TENSORSTORE_", "MARLVAULT_")
_PROXIES = ("http_proxy", "https_proxy", "all_proxy")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without cloud settings, proxies or credentials; ``HOME`` and
    gcloud's config dir in ``home``; the checkout first on ``PYTHONPATH``; GCE's metadata server
    on a closed loopback port (so no test ever looks for it on the network)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_CLEARED) and k.lower() not in _PROXIES
    }
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["HOME"] = str(home)
    env["CLOUDSDK_CONFIG"] = str(home / "gcloud")
    env["GCE_METADATA_ROOT"] = f"127.0.0.1:{closed_port()}"
    return env


class _Fails(http.server.BaseHTTPRequestHandler):
    def _fail(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _fail

    def log_message(self, *args: object) -> None:
        del args


@contextmanager
def failing_http_server() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` answering 503 to every request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fails)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_server() -> Iterator[tuple[str, socket.socket]]:
    """``(url, listening socket)``: connections complete (kernel backlog) but nothing answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", sock
    finally:
        sock.close()


@contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """A moto S3 server on loopback with ``bucket`` created; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = closed_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
