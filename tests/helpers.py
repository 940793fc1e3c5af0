"""Helpers shared by the test modules (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arithlens.cli import main


def arithlens(*args: str) -> subprocess.CompletedProcess:
    """Run `arithlens ARGS` in a fresh process, as a user would; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "arithlens.cli", *args], capture_output=True, text=True)


def arithlens_here(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `arithlens ARGS` in this process (fast; for commands that load small models): (exit code, out, err)."""
    monkeypatch.setattr(sys, "argv", ["arithlens", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err
