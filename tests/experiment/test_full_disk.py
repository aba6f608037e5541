"""A disk that fills in the middle of a run (a real small tmpfs), then the same command again
once there is room: the trials resume from their own checkpoints, nothing they trained is
trained again or lost. Where Tune's own state was cut short (the disk can cut it as it fills;
made certain here by cutting it in a copy), the re-run says in one line why it starts afresh
and keeps every file of the earlier trials, byte for byte."""

from __future__ import annotations

import json
import pickletools
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers import RayEnv, error_lines, histories, run_command, snapshot, tmpfs, trial_statuses

pytestmark = pytest.mark.slow  # real Ray runs on a real tmpfs

EPOCHS = 4
NAME = "seed-ablation"
# The first checkpoint (~34 MB: weights, best weights, Adam's two moments) fits, the second
# does not: the disk fills in the middle of a trial, after Tune has saved a state.
SMALL = "40m"
ROOMY = "600m"
RESUMES = "re-run the same command to resume"


def run(cmd: list[str], env: RayEnv) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env.env, capture_output=True, text=True, timeout=300)


def assert_every_epoch_once(runs: dict[str, list[dict[str, Any]]], statuses: dict[str, str]):
    """Both trials reported every epoch once, and finished; the folder holds one experiment
    (every trial with rows is one Tune's state knows)."""
    assert len(runs) == 2, sorted(runs)
    for name, rows in runs.items():
        assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1)), name
    assert {rows[0]["trial_id"] for rows in runs.values()} == set(statuses)
    assert set(statuses.values()) == {"TERMINATED"}


def cut_files(experiment: Path) -> list[str]:
    """Tune's files that the disk cut short, read here on their own terms: the experiment
    states as JSON, tuner.pkl and the searcher's state as pickles (walked, never loaded), in
    the experiment folder or where the failed run set them aside."""
    cut = []
    for folder in (experiment, *experiment.glob("*.damaged")):
        for path in folder.glob("experiment_state-*.json"):
            try:
                json.loads(path.read_bytes())
            except ValueError:
                cut.append(path.name)
        for path in [*folder.glob("tuner.pkl"), *folder.glob("basic-variant-state-*.json")]:
            try:
                list(pickletools.genops(path.read_bytes()))
            except ValueError:
                cut.append(path.name)
    return cut


@pytest.fixture(scope="module")
def full_disk(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The run that filled the disk, a copy of what it left, and the same command once the
    disk has room."""
    root = tmp_path_factory.mktemp("full_disk")
    env = RayEnv()
    try:
        with tmpfs(root / "small", SMALL) as storage:
            cmd = run_command(tiny_raw, storage, "--epochs", str(EPOCHS))
            filled = run(cmd, env)
            left = shutil.copytree(storage, root / "left", symlinks=True)
            before = histories(storage / NAME)
            subprocess.run(["mount", "-o", f"remount,size={ROOMY}", str(storage)], check=True)
            rerun = run(cmd, env)
            after = histories(storage / NAME)
            statuses = trial_statuses(storage / NAME)
            damaged = sorted(p.name for p in (storage / NAME).glob("*.damaged"))
            whole = all(zipfile.is_zipfile(p) for p in (storage / NAME).glob("*/*/state.pt"))
    finally:
        env.close()
    return {
        "filled": filled,
        "storage": storage,
        "left": left,
        "before": before,
        "rerun": rerun,
        "after": after,
        "statuses": statuses,
        "damaged": damaged,
        "checkpoints_whole": whole,
    }


def test_a_full_disk_stops_the_run_in_one_line(full_disk: dict[str, Any]) -> None:
    filled = full_disk["filled"]
    assert filled.returncode == 1, filled.stdout[-2000:] + filled.stderr[-2000:]
    (line,) = error_lines(filled.stderr)
    assert line.startswith(f"error: no space left on device writing {full_disk['storage'] / NAME}")
    assert "Traceback" not in filled.stdout + filled.stderr


def test_the_rerun_resumes_the_trials_from_their_own_checkpoints(
    full_disk: dict[str, Any],
) -> None:
    (line,) = error_lines(full_disk["filled"].stderr)
    rerun = full_disk["rerun"]
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    cut = cut_files(full_disk["left"] / NAME)
    if cut:  # the disk cut Tune's own state as it filled (seen once in six runs)
        assert not line.endswith(RESUMES) and full_disk["damaged"], line
        assert any(name in line for name in cut), line
        pytest.xfail(f"this run's full disk cut Tune's own state ({cut}): nothing to resume")
    assert line.endswith(RESUMES), line
    before, after = full_disk["before"], full_disk["after"]
    assert_every_epoch_once(after, full_disk["statuses"])
    assert "resuming experiment" in rerun.stdout and not full_disk["damaged"]
    assert any(before.values()), "the disk filled before any trial reported"
    for name, rows in before.items():
        assert after[name][: len(rows)] == rows  # kept, not trained again
        if rows:  # the next epoch came from the checkpoint of the last one stored
            resumed = after[name][len(rows)]
            assert resumed["epoch"] == len(rows) + 1 and resumed["iterations_since_restore"] == 1
    # The checkpoint cut by the full disk was stored again, whole.
    assert full_disk["checkpoints_whole"]


def test_a_state_cut_short_is_said_in_one_line_and_its_trials_are_kept(
    full_disk: dict[str, Any], tiny_raw: Path
) -> None:
    """What the full disk left (copied), with Tune's newest state cut in half as a disk that
    fills while Tune rewrites it leaves it: the re-run cannot resume, and says why."""
    left = full_disk["left"]
    experiment = left / NAME
    states = sorted(experiment.glob("experiment_state-*.json"))
    if states:  # not already set aside by the failed run
        data = states[-1].read_bytes()
        states[-1].write_bytes(data[: len(data) // 2])
    files = snapshot(experiment)
    env = RayEnv()
    try:
        rerun = run(run_command(tiny_raw, left, "--epochs", str(EPOCHS)), env)
    finally:
        env.close()
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    (note,) = [line for line in rerun.stdout.splitlines() if line.startswith("note:")]
    assert "the experiment starts afresh" in note and "resuming" not in rerun.stdout
    folder = experiment / note.rsplit(" kept in ", 1)[1].rstrip(")")
    if states:
        assert note.startswith(f"note: {states[-1].name} is cut short, so Tune cannot resume it")
    # Every file of the earlier trials, Tune's (cut) state and tuner.pkl kept, byte for byte;
    # the tool's own files and W&B's stay where they are.
    aside = snapshot(folder)
    for rel, digest in files.items():
        if not rel.startswith((".", "tune_cilp.json", "wandb/")):
            assert aside[rel.removeprefix(f"{folder.name}/")] == digest, rel
    assert_every_epoch_once(histories(experiment), trial_statuses(experiment))
