"""The installed ``marlvault`` console script on usage errors: click's usage line, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marlvault.cli import app, main

SCRIPT = Path(sys.executable).parent / "marlvault"

USAGE_ERRORS = [
    (["nosuch"], "No such command 'nosuch'"),
    (["offline", "train", "nosuchalgo"], "No such command 'nosuchalgo'"),
    (["vault", "nosuch"], "No such command 'nosuch'"),
    (["envs", "--nosuchflag"], "No such option: --nosuchflag"),
    (["train", "ippo", "--nosuchflag"], "No such option: --nosuchflag"),
    (["vault", "info", "--nosuchflag", "x"], "No such option: --nosuchflag"),
]


@pytest.mark.parametrize(("args", "message"), [USAGE_ERRORS[1], USAGE_ERRORS[4]])
def test_console_script_usage_error_exits_2_without_traceback(
    args: list[str], message: str
) -> None:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert message in proc.stderr
    assert "Usage: marlvault" in proc.stderr


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS)
def test_every_group_usage_error_exits_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same entry point in-process, for every group (fast)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert message in err and "Usage: marlvault" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "Usage: marlvault" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["envs", "info", "nosuch", "x"], 3, "unknown environment 'nosuch'"),
        (["vault", "info", "/nonexistent/v.vlt/x"], 11, "/nonexistent/v.vlt/x: expected a vault"),
        (["vault", "returns", "/nonexistent/v.vlt/x"], 11, "expected a vault"),
        (["record", "/nonexistent/ckpt"], None, "/nonexistent/ckpt"),
        (["train", "ippo", "arch.num_envs=0"], 2,
         "arch.num_envs: expected an integer in [1, 1048576], found 0"),
    ],
)
def test_every_group_reports_marlvault_errors_in_one_line(args, code, needle) -> None:
    """Through the app object (as CliRunner users see it): one ``error:`` line, the class's code."""
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if code is not None:
        assert result.exit_code == code, result.output
    else:
        assert result.exit_code not in (0, 1), result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error: ")]
    assert needle in line
    assert "Traceback" not in result.output
