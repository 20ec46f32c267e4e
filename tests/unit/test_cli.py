from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import webspaces
from webspaces.cli import main

SCRIPT = Path(sys.executable).parent / "webspaces"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"webspaces {webspaces.__version__}"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: webspaces" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_info_json_reports_every_loaded_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == webspaces.__version__
    assert set(report["wire"].values()) <= {"cython", "python"}
    assert "buffer" in report["wire"]


def test_console_script_is_installed() -> None:
    """The `webspaces` command from pyproject's [project.scripts] runs, with --help that helps."""
    assert SCRIPT.exists(), f"{SCRIPT} missing: is the project installed into this venv?"
    result = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, env=dict(os.environ), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "info" in result.stdout and "--version" in result.stdout
