"""Storage URLs through the installed ``marlvault`` console script (issue 10): a marker secret never
appears in stdout/stderr, unreachable endpoints end in bounded time with one ``error:`` line
naming the endpoint, Ctrl-C works while waiting. Only loopback addresses are used."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import make_batch
from .loopback import MARKER, clean_env, closed_port, failing_http_server, moto_s3, silent_server

SCRIPT = Path(sys.executable).parent / "marlvault"
BOUND_S = 30.0
"""Whole command, interpreter start included, with MARLVAULT_CONNECT_TIMEOUT=1."""


def _run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    start = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120
    )
    return proc, time.monotonic() - start


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert MARKER not in out
    assert "Traceback" not in out, out
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    env = clean_env(tmp_path)
    env.update(
        MARLVAULT_CONNECT_TIMEOUT="1",
        AWS_ACCESS_KEY_ID="AKIDTEST",
        AWS_SECRET_ACCESS_KEY=MARKER,
        AWS_SESSION_TOKEN=MARKER + "-token",
        AWS_REGION="us-east-1",
    )
    return env


def test_closed_endpoint_fails_bounded_naming_it(env):
    port = closed_port()
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    proc, took = _run(["vault", "info", "s3://bkt/rware/Good"], env)
    assert proc.returncode == 22, proc.stderr
    assert f"127.0.0.1:{port}" in _one_error_line(proc)
    assert took < BOUND_S


@pytest.mark.parametrize("kind", ["failing", "silent"])
def test_endpoint_that_accepts_but_never_serves_ends_bounded(env, kind):
    env["MARLVAULT_REQUEST_RETRIES"] = "1"
    server = failing_http_server() if kind == "failing" else silent_server()
    with server as started:
        url = started if kind == "failing" else started[0]
        env["AWS_ENDPOINT_URL"] = url
        proc, took = _run(["vault", "info", "s3://bkt/rware/Good"], env)
    assert proc.returncode == 22, proc.stderr
    assert url.removeprefix("http://") in _one_error_line(proc)
    assert took < BOUND_S


def test_gs_without_credentials_fails_bounded_with_the_fix(env):
    proc, took = _run(["vault", "info", "gs://bkt/rware/Good"], env)
    assert proc.returncode == 23, proc.stderr
    assert "gcloud auth application-default login" in _one_error_line(proc)
    assert took < BOUND_S


@pytest.mark.parametrize(
    ("url", "code"),
    [("http://example.invalid/v", 21), (f"s3://me:{MARKER}@bkt/v", 21), (f"gs://{MARKER}@b/v", 21)],
)
def test_refused_urls_never_echo_the_secret(env, url, code):
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{closed_port()}"
    proc, _ = _run(["vault", "info", url], env)
    assert proc.returncode == code, proc.stderr
    _one_error_line(proc)


def test_ctrl_c_while_waiting_for_a_silent_endpoint(env):
    env["MARLVAULT_CONNECT_TIMEOUT"] = "60"
    with silent_server() as (url, sock):
        env["AWS_ENDPOINT_URL"] = url
        proc = subprocess.Popen(
            [str(SCRIPT), "vault", "info", "s3://bkt/v"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sock.settimeout(90)
        sock.accept()[0].close()  # the request is now in flight (the pre-check's connection)
        sock.accept()  # ... and tensorstore's
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode == 130, err
    assert MARKER not in out + err


def test_moto_vault_info_and_errors_never_print_the_secret(env, tmp_path, monkeypatch):
    pytest.importorskip("moto.server")
    from marlvault.vault import Vault

    with moto_s3("mv-sec") as endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
            monkeypatch.setenv(key, env[key])
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        with Vault.create("s3://mv-sec/rware/Good", make_batch(2, 6, seed=0), chunks=4) as v:
            v.append(make_batch(2, 6, seed=0))
        env.pop("AWS_SESSION_TOKEN")
        ok, _ = _run(["vault", "info", "s3://mv-sec/rware/Good"], env)
        missing, _ = _run(["vault", "info", "s3://no-such-bucket/rware/Good"], env)
        userinfo, _ = _run(["vault", "info", f"s3://k:{MARKER}@mv-sec/rware/Good"], env)
    assert ok.returncode == 0, ok.stderr
    assert "rows (B): 2" in ok.stdout and MARKER not in ok.stdout + ok.stderr
    assert missing.returncode == 11 and "no-such-bucket" in _one_error_line(missing)
    assert userinfo.returncode == 21 and "***@mv-sec" in _one_error_line(userinfo)
