"""Storage URLs through the library: parsing, refused schemes and credentials, bounded connects,
secrets scrubbed, flashbax-compat names that would escape ``rel_dir`` (issue 10)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from marlvault.errors import (
    ConfigError,
    InvalidLocationError,
    StorageCredentialsError,
    StorageUnreachableError,
    VaultError,
    scrub,
)
from marlvault.vault import Vault
from marlvault.vault.compat import Vault as CompatVault
from marlvault.vault.store import parse_location

from .loopback import MARKER, clean_env, closed_port, failing_http_server


@pytest.fixture()
def storage_env(monkeypatch, tmp_path):
    """os.environ without cloud settings (see :func:`clean_env`), restored after the test."""
    env = clean_env(tmp_path)
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MARLVAULT_CONNECT_TIMEOUT", "1")
    return monkeypatch


@pytest.mark.parametrize("url", ["http://host/v", "https://h/v", "ftp://h/v", "S3A://b/v"])
def test_unsupported_scheme_refused_with_the_supported_list(url):
    with pytest.raises(InvalidLocationError) as info:
        Vault.open(url)
    assert isinstance(info.value, ValueError)
    assert "file://, s3://, gs://" in str(info.value)


@pytest.mark.parametrize("url", [f"s3://user:{MARKER}@bkt/v", f"gs://{MARKER}@bkt/v"])
def test_credentials_in_url_refused_without_echo(url, storage_env):
    with pytest.raises(InvalidLocationError) as info:
        parse_location(url)
    text = str(info.value)
    assert MARKER not in text and MARKER not in repr(info.value.args)
    assert "***@bkt" in text and "credentials in the URL" in text


@pytest.mark.parametrize(
    ("url", "needle"),
    [("s3:///v", "no bucket name"), ("gs://ab/v", "Invalid GCS bucket"), ("/tmp/a\0b", "path")],
)
def test_invalid_bucket_or_path_is_a_named_error(url, needle, storage_env):
    with pytest.raises(InvalidLocationError, match=needle):
        parse_location(url)


def test_valid_locations_unchanged(storage_env, tmp_path):
    s3 = parse_location("s3://bkt/a/b/")
    assert (s3.display, s3.base["bucket"], s3.base["path"]) == ("s3://bkt/a/b", "bkt", "a/b/")
    assert parse_location("gs://bkt").base == {"driver": "gcs", "bucket": "bkt", "path": ""}
    assert parse_location(f"file://{tmp_path}/v").display == f"{tmp_path}/v"


def test_scrub_hides_userinfo_and_secret_env_values(storage_env):
    storage_env.setenv("AWS_SECRET_ACCESS_KEY", MARKER)
    text = scrub(f"x http://u:p@h:1/ {MARKER} s3://a:b@c/d")
    assert text == "x http://***@h:1/ *** s3://***@c/d"
    assert MARKER not in str(VaultError(f"failed with {MARKER}"))


def test_bad_timeout_setting_is_a_config_error(storage_env):
    storage_env.setenv("MARLVAULT_CONNECT_TIMEOUT", "soon")
    storage_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ConfigError, match="MARLVAULT_CONNECT_TIMEOUT"):
        Vault.open("s3://bkt/v")


def test_closed_s3_endpoint_fails_fast_naming_it(storage_env):
    port = closed_port()
    storage_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    storage_env.setenv("AWS_SECRET_ACCESS_KEY", MARKER)
    start = time.monotonic()
    with pytest.raises(StorageUnreachableError) as info:
        Vault.open("s3://bkt/v")
    assert time.monotonic() - start < 5
    assert f"127.0.0.1:{port}" in str(info.value) and MARKER not in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_endpoint_with_credentials_refused_without_echo(storage_env):
    storage_env.setenv("AWS_ENDPOINT_URL", f"http://me:{MARKER}@127.0.0.1:{closed_port()}")
    with pytest.raises(InvalidLocationError) as info:
        Vault.open("s3://bkt/v")
    assert MARKER not in str(info.value) and "AWS_ENDPOINT_URL" in str(info.value)


def test_endpoint_failing_every_request_ends_bounded(storage_env):
    with failing_http_server() as url:
        storage_env.setenv("AWS_ENDPOINT_URL", url)
        start = time.monotonic()
        with pytest.raises(StorageUnreachableError) as info:
            Vault.open("s3://bkt/v")
    assert time.monotonic() - start < 15
    assert url.removeprefix("http://") in str(info.value)


def test_gs_without_credentials_is_a_named_error(storage_env):
    start = time.monotonic()
    with pytest.raises(StorageCredentialsError) as info:
        Vault.open("gs://bkt/v")
    assert time.monotonic() - start < 5
    assert "gcloud auth application-default login" in str(info.value)


def test_gs_test_endpoint_closed(storage_env, tmp_path):
    storage_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    port = closed_port()
    storage_env.setenv("TENSORSTORE_GCS_HTTP_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageUnreachableError, match=f"127.0.0.1:{port}"):
        Vault.open("gs://bkt/v")


@pytest.mark.parametrize(
    ("name", "uid"),
    [("rware", "../../x"), ("ABS/rware", "Good"), ("a/../../b", "Good"), ("rware", "ABS/x")],
)
def test_compat_refuses_names_escaping_rel_dir(name, uid, tmp_path, monkeypatch):
    """flashbax's ``<cwd>/<rel_dir>/<name>/<uid>`` must stay inside ``<cwd>/<rel_dir>``."""
    name, uid = (x.replace("ABS", str(tmp_path / "outside")) for x in (name, uid))
    (tmp_path / "inner").mkdir()
    monkeypatch.chdir(tmp_path / "inner")
    example = {"obs": np.zeros((1, 2, 3), np.float32)}
    with pytest.raises(InvalidLocationError, match="rel_dir"):
        CompatVault(vault_name=name, experience_structure=example, vault_uid=uid)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner"]
    assert not os.listdir(tmp_path / "inner")
