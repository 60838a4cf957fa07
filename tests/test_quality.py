"""The code base stays lint-clean and type-clean (ruff, mypy --strict)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_clean() -> None:
    """ruff check and ruff format find nothing to change."""
    check = _run("ruff", "check", "src", "tests", "bench", "tools")
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = _run("ruff", "format", "--check", "src", "tests", "bench", "tools")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict_clean() -> None:
    """mypy --strict passes on src/execr."""
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
