"""Two real `layerlab` processes, to confirm what the in-process fuzz tests assume: what reaches a
terminal's standard error and the exit status a shell sees."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _layerlab(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "LAYERLAB_DEBUG"} | env
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def test_a_suite_without_models_is_refused_literally_in_a_real_process(tmp_path):
    """The issue's example: a token task and no [[models]]: one line naming the table, exit 2, no store."""
    (tmp_path / "tinyscale.toml").write_text('name = "tinyscale"\n[[tasks]]\nname = "parity"\n')
    got = _layerlab(["-m", "layerlab.cli", "run", "tinyscale.toml"], tmp_path)
    assert got.returncode == 2, got
    assert got.stdout == "", got
    lines = got.stderr.splitlines()
    assert len(lines) == 1, got.stderr
    assert lines[0].startswith("error: suite 'tinyscale' has no [[models]]") and "[[models]] label =" in lines[0]
    assert not (tmp_path / "layerlab-runs").exists()


def test_a_bug_ends_in_one_line_and_exit_1(tmp_path):
    """An unexpected exception (simulated: a command that divides by zero) is one line with a hint to
    report it, exit 1 (LAYERLAB_DEBUG=1 and its traceback: tests/test_cli.py)."""
    code = ("import sys, layerlab.cli as cli\n"
            "cli.cmd_cards = lambda args, console: 1 / 0\n"
            "sys.exit(cli.main(['cards']))\n")
    got = _layerlab(["-c", code], tmp_path)
    assert got.returncode == 1, got
    lines = got.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in got.stderr, got.stderr
    assert lines[0].startswith("error: internal error (ZeroDivisionError: division by zero)")
    assert "bug in layerlab" in lines[0] and "report" in lines[0] and "LAYERLAB_DEBUG=1" in lines[0]
