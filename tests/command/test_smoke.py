"""The real command end to end, as a new user first runs it: `python -m tune_cilp.run
--smoke-test` on the default data (generated on first use), exit 0, the comparison table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, RayEnv, histories

pytestmark = pytest.mark.slow


def test_smoke_test_runs_the_default_experiment_end_to_end(tmp_path: Path) -> None:
    env = RayEnv()
    try:
        cmd = [sys.executable, "-m", "tune_cilp.run", "--smoke-test"]
        cmd += ["--storage-path", str(tmp_path), "--wandb", "disabled"]
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env.env, capture_output=True, text=True, timeout=600
        )
    finally:
        env.close()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = histories(tmp_path / "seed-ablation")
    downsamples = sorted(rows[0]["config"]["downsample"] for rows in runs.values())
    assert downsamples == ["maxpool", "stride"]
    assert all([row["epoch"] for row in rows] == [1] for rows in runs.values())
    assert "| Validation Loss" in proc.stdout and "concat-stride" in proc.stdout
    assert "error" not in proc.stderr.lower().replace("errors", "")
