"""The codebase stays ruff-clean (lint rules in pyproject.toml)."""

import subprocess
import sys

from helpers import ROOT


def test_ruff_check_is_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
