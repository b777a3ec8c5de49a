"""S3 round trip through tensorstore's s3 kvstore against a moto server on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

from marlvault.errors import VaultLockedError, VaultNotFoundError
from marlvault.vault import Vault

from .helpers import assert_episodes, assert_tree_equal, concat, make_batch

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def s3_endpoint(monkeypatch):
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket="mv-test"
    )
    yield endpoint
    server.stop()


def test_s3_round_trip(s3_endpoint):
    url = "s3://mv-test/rware/tiny.vlt/Good"
    batches = [make_batch(2, t, seed=i) for i, t in enumerate([5, 11, 3])]
    with Vault.create(url, batches[0], chunks=4, metadata={"marlvault": {"env": "rware"}}) as v:
        v.append(batches[0])
        with pytest.raises(VaultLockedError):  # lock object seen by a second writer
            Vault.open(url, mode="a")
        v.append(batches[1])
    with Vault.open(url, mode="a") as v:  # reopen mid-chunk and continue
        assert v.num_steps == 16
        v.append(batches[2])
    v = Vault.open(url)
    assert v.path == url and v.num_steps == 19
    assert v.metadata["marlvault"]["env"] == "rware"
    want = concat(batches)
    assert_tree_equal(v.read(), want)
    assert_episodes(v.episodes, want)
    assert v.size_on_disk() > 0
    assert "testing-secret" not in repr(v.metadata)
    with pytest.raises(VaultNotFoundError):
        Vault.open("s3://mv-test/nothing/here")
