"""Reading an experiment someone else made never runs its code: payloads planted in a copied
experiment's Tune state, pickle files and checkpoints stay unloaded on every read path (the
table, its files, --to-fiftyone, --replicate, `analysis.report`, the notebook), and each path
prints its table or one clear line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import (
    ROOT,
    MkdirOnLoad,
    RayEnv,
    blob,
    error_lines,
    execute_notebook,
    plant,
    run_command,
)

from tune_cilp.core.checkpoint import STATE_FILE

pytestmark = pytest.mark.slow  # a real run, then subprocesses


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def run_ok(cmd: list[str], ray_env: RayEnv) -> None:
    """Run a `tune_cilp.run` command with its own Ray; it must succeed."""
    proc = subprocess.run(
        cmd, cwd=ROOT, env=ray_env.env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def source(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory, ray_env: RayEnv) -> Path:
    """A finished 1-epoch seed-ablation experiment, as its owner made it."""
    storage = tmp_path_factory.mktemp("untrusted")
    run_ok(run_command(tiny_raw, storage, "--epochs", "1"), ray_env)
    return storage / "seed-ablation"


def planted_copy(source: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of `source` carrying payloads, and the path each payload would create."""
    copy, marker = tmp_path / "from-a-colleague", tmp_path / "code-ran"
    shutil.copytree(source, copy)
    assert plant(copy, marker) == 1 + 1 + 2 * 2  # state file, tuner.pkl, 2 trials x 2 pickles
    return copy, marker


def test_the_planted_payloads_are_live(source: Path, tmp_path: Path) -> None:
    # What Tune's own reader does with the copy: the code runs. Every test below relies on it.
    copy, marker = planted_copy(source, tmp_path)
    unsafe = f"from ray.tune import ExperimentAnalysis; ExperimentAnalysis({str(copy)!r})"
    python("-c", unsafe)
    assert marker.is_dir()


def test_every_read_path_leaves_the_payloads_unloaded(
    source: Path, tmp_path: Path, ray_env: RayEnv, tiny_raw: Path
) -> None:
    copy, marker = planted_copy(source, tmp_path)
    owner = python("-m", "analysis", str(source))
    assert owner.returncode == 0, owner.stderr[-2000:]

    table = python(
        *("-m", "analysis", str(copy), "--json", str(tmp_path / "t.json")),
        *("--csv", str(tmp_path / "t.csv"), "--plots", str(tmp_path / "plots")),
    )
    assert table.returncode == 0, table.stderr[-2000:]
    printed = [line for line in table.stdout.splitlines() if not line.startswith("wrote ")]
    assert printed == owner.stdout.replace(str(source), str(copy)).splitlines()
    assert json.loads((tmp_path / "t.json").read_text())["variants"]
    assert list((tmp_path / "plots").glob("*.png"))

    report = python("-c", f"import analysis; print(analysis.report({str(copy)!r}))")
    assert report.returncode == 0, report.stderr[-2000:]
    assert report.stdout.strip() == owner.stdout.replace(str(source), str(copy)).strip()

    review = python(
        "-m", "analysis", "--to-fiftyone", str(copy), "--fiftyone-dataset", "untrusted-review"
    )
    assert review.returncode == 0, review.stdout[-2000:] + review.stderr[-2000:]

    text, images = execute_notebook(copy)
    assert "concat-maxpool" in text and images > 0

    rerun = tmp_path / "rerun"
    replicate = run_command(tiny_raw, rerun, "--replicate", str(copy), "--seeds", "7,8")
    run_ok([*replicate, "--epochs", "1"], ray_env)
    assert len(list((rerun / "from-a-colleague-replicate").glob("*/result.json"))) == 4
    assert not marker.exists()


def test_a_pickled_config_is_refused_in_one_line(source: Path, tmp_path: Path) -> None:
    copy, marker = planted_copy(source, tmp_path)
    state_file = next(copy.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    trial, meta = (json.loads(part) for part in state["trial_data"][0])
    trial["config"]["fusion"] = blob(marker)
    state["trial_data"][0] = [json.dumps(trial), json.dumps(meta)]
    state_file.write_text(json.dumps(state))
    replicate = ("-m", "tune_cilp.run", "--replicate", str(copy), "--seeds", "7,8")
    for args in (("-m", "analysis", str(copy)), (*replicate, "--storage-path", str(tmp_path))):
        proc = python(*args)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        [line] = error_lines(proc.stderr + proc.stdout)
        assert "config is not plain JSON; not read" in line
    assert not marker.exists()


def test_a_checkpoint_carrying_code_is_refused_in_one_line(source: Path, tmp_path: Path) -> None:
    copy, marker = planted_copy(source, tmp_path)
    for state in copy.glob(f"*/checkpoint_*/{STATE_FILE}"):
        torch.save({"config": {}, "model": MkdirOnLoad(marker)}, state)
    table = python("-m", "analysis", str(copy))  # the table reads predictions.json only
    assert table.returncode == 0, table.stderr[-2000:]
    review = python(
        "-m", "analysis", "--to-fiftyone", str(copy), "--fiftyone-dataset", "untrusted-ckpt"
    )
    assert review.returncode == 2, review.stdout[-2000:] + review.stderr[-2000:]
    [line] = error_lines(review.stderr + review.stdout)
    assert "not a loadable checkpoint" in line
    assert not marker.exists()
