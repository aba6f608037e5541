"""Fault injection with real processes: a worker killed mid-training, a driver killed
mid-experiment, a trial that raises. Each interrupted run is compared with one uninterrupted run
of the same command and seed (on CPU the same seed gives the same numbers).

The uninterrupted run also carries the raising configuration (seed 52 raises, seed 51 is the
reference), so one Ray run serves both.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from faulty_run import MESSAGE, faulty, held_pid, pause_env
from helpers import (
    RUN_TIMEOUT_S,
    RayEnv,
    finish,
    histories,
    run_analysis,
    run_command,
    start,
    trial_statuses,
    wait_for,
)

from analysis import experiment_table, load_experiment

pytestmark = pytest.mark.slow  # real Ray runs or subprocesses

EPOCHS = 4
KILLED_AT = 2  # the epoch after which a trial's worker is killed: between its first and last
DOWNSAMPLES = ["maxpool", "stride"]  # seed-ablation's two variants
EXPERIMENT = "seed-ablation"


def fault_command(tiny_raw: Path, storage: Path, *extra: str) -> list[str]:
    # Two CPUs per trial on the local 2-CPU Ray: the two trials run one after the other, with
    # the same thread count in every run (so the numbers match between runs).
    return run_command(tiny_raw, storage, "--epochs", str(EPOCHS), "--cpus-per-trial", "2", *extra)


def progress_epochs(trial_dir: Path) -> list[int]:
    with open(trial_dir / "progress.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def by_downsample(runs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The seed-51 trials' rows by downsampling (the runs' common configurations): one trial
    of each of DOWNSAMPLES, or the comparisons over it would check nothing."""
    found = {
        rows[0]["config"]["downsample"]: rows
        for rows in runs.values()
        if rows and rows[0]["config"]["seed"] == 51
    }
    assert sorted(found) == DOWNSAMPLES, sorted(found)
    return found


def numbers_table(experiment: Path) -> list[list[str]]:
    """The comparison table's rows without the timing row (timings differ between runs)."""
    rows = experiment_table(load_experiment(experiment)).rows()
    return [row for row in rows if row[0] != "Training Time (s)"]


@pytest.fixture(scope="module")
def baseline(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run: both variants with seeds 51 and 52, where every seed-52 trial
    raises at its start; then `python -m analysis` on it."""
    storage = tmp_path_factory.mktemp("baseline")
    env = RayEnv()
    try:
        cmd = faulty(fault_command(tiny_raw, storage, "--seeds", "51,52", "--max-failures", "0"))
        log = storage / "run.log"
        run = start(cmd, env, log)
        output = finish(run, log)
    finally:
        env.close()
    experiment = storage / EXPERIMENT
    analysis = run_analysis(experiment)
    return {"code": run.returncode, "output": output, "analysis": analysis, "path": experiment}


@pytest.fixture(scope="module")
def worker_kill(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run whose first trial is held right after it reports epoch KILLED_AT (its checkpoint
    saved, the next epoch not started) and then has its worker process killed (SIGKILL)."""
    storage = tmp_path_factory.mktemp("worker_kill")
    experiment = storage / EXPERIMENT
    log = storage / "run.log"
    marker = storage / "held"
    env = RayEnv(**pause_env(marker, KILLED_AT))
    try:
        driver = start(faulty(fault_command(tiny_raw, storage, "--max-failures", "2")), env, log)
        try:
            pid = wait_for(lambda: held_pid(marker), driver, f"a trial held at epoch {KILLED_AT}")
            worker = psutil.Process(pid)
            assert driver.pid in [p.pid for p in worker.parents()]  # ours, not another's
            worker.send_signal(signal.SIGKILL)
        finally:
            output = finish(driver, log)
    finally:
        env.close()
    assert driver.returncode == 0, output[-3000:]
    return {"pid": pid, "experiment": experiment, "output": output}


def test_killed_worker_resumes_from_checkpoint_with_every_epoch_once(
    worker_kill: dict[str, Any], baseline: dict[str, Any]
) -> None:
    experiment = worker_kill["experiment"]
    runs = histories(experiment)
    assert len(runs) == 2
    for name, rows in runs.items():
        assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1)), name
        assert progress_epochs(experiment / name) == list(range(1, EPOCHS + 1)), name
    (rows,) = [rows for rows in runs.values() if rows[0]["pid"] == worker_kill["pid"]]
    pids = [row["pid"] for row in rows]
    # The epochs up to the kill in the killed process; the rest in one new process, continuing
    # from the checkpoint (a restart from scratch would report epoch 1 again).
    assert set(pids[:KILLED_AT]) == {worker_kill["pid"]}, pids
    assert len(set(pids[KILLED_AT:])) == 1 and worker_kill["pid"] not in pids[KILLED_AT:], pids
    assert set(trial_statuses(experiment).values()) == {"TERMINATED"}
    # The resumed trial computes exactly what the uninterrupted one did.
    expected = by_downsample(histories(baseline["path"]))
    for downsample, rows in by_downsample(runs).items():
        assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in expected[downsample]]
        assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in expected[downsample]]


@pytest.fixture(scope="module")
def driver_kill(
    tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory, ray_env: RayEnv
) -> dict[str, Any]:
    """A run whose driver (and its process group) gets SIGKILL once the first trial finished,
    then the same command again."""
    storage = tmp_path_factory.mktemp("driver_kill")
    experiment = storage / EXPERIMENT
    cmd = fault_command(tiny_raw, storage)
    log = storage / "first.log"
    driver = start(cmd, ray_env, log)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while "TERMINATED" not in trial_statuses(experiment).values():
            assert driver.poll() is None, "run ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished"
            time.sleep(0.1)
        os.killpg(driver.pid, signal.SIGKILL)
        t_kill = time.monotonic()
    finally:
        finish(driver, log)
    at_kill = trial_statuses(experiment)
    before = histories(experiment)
    log = storage / "resumed.log"
    resumed = start(cmd, ray_env, log)
    output = finish(resumed, log)
    assert resumed.returncode == 0, output[-3000:]
    return {
        "experiment": experiment,
        "at_kill": at_kill,
        "before": before,
        "output": output,
        "resume_s": time.monotonic() - t_kill,
    }


def test_killed_driver_resumes_and_matches_an_uninterrupted_run(
    driver_kill: dict[str, Any], baseline: dict[str, Any]
) -> None:
    experiment = driver_kill["experiment"]
    at_kill = driver_kill["at_kill"]
    assert "resuming experiment" in driver_kill["output"]
    assert sorted(at_kill.values()) != ["TERMINATED", "TERMINATED"], at_kill  # killed mid-way
    finished = {t for t, status in at_kill.items() if status == "TERMINATED"}
    assert finished
    after = histories(experiment)
    assert set(trial_statuses(experiment).values()) == {"TERMINATED"}
    for name, rows in after.items():
        assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1)), name
        if rows[0]["trial_id"] in finished:
            assert rows == driver_kill["before"][name]  # not rerun
    assert numbers_table(experiment) == numbers_table(baseline["path"])
    expected = by_downsample(histories(baseline["path"]))
    for downsample, rows in by_downsample(after).items():
        assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in expected[downsample]]


def state_with(experiment: Path, iteration: int) -> tuple[Path, bytes] | None:
    """The experiment state file and its bytes, once a trial's last saved result in it is
    `iteration`; None before (or while the file is being rewritten)."""
    for path in experiment.glob("experiment_state-*.json"):
        data = path.read_bytes()
        try:
            metas = [json.loads(meta) for _, meta in json.loads(data)["trial_data"]]
        except (ValueError, KeyError):
            continue
        if any((m.get("last_result") or {}).get("training_iteration") == iteration for m in metas):
            return path, data
    return None


def test_rows_newer_than_the_saved_state_are_not_reported_twice(
    tiny_raw: Path, tmp_path: Path, baseline: dict[str, Any]
) -> None:
    """Tune copies the rows and its experiment state to the storage path in the background; a
    driver that dies mid-copy can leave rows newer than the state (seen after a second Ctrl-C:
    epochs 1, 2, 2, 3, ...). Made here from outside: SIGKILL, then the state as it was one
    epoch earlier put back. The re-run drops the newer row, trains that epoch again and
    reports every epoch once, with the uninterrupted run's numbers."""
    experiment = tmp_path / EXPERIMENT
    cmd = fault_command(tiny_raw, tmp_path)
    # The state saved at every step, so that it follows the rows closely: the one put back
    # is then one epoch behind, and its checkpoint is among the two Tune keeps.
    env = RayEnv(TUNE_GLOBAL_CHECKPOINT_S="0")
    try:
        log = tmp_path / "first.log"
        driver = start(cmd, env, log)
        try:
            state, saved_state = wait_for(lambda: state_with(experiment, 2), driver, "epoch 2")
            wait_for(lambda: max(map(len, histories(experiment).values())) >= 3, driver, "3")
            os.killpg(driver.pid, signal.SIGKILL)
        finally:
            finish(driver, log)
        before = histories(experiment)
        state.write_bytes(saved_state)
        output = rerun(cmd, env, tmp_path)
    finally:
        env.close()
    after = resumed_once(experiment, baseline, output)
    for name, rows in after.items():  # the dropped rows' epochs, trained again, gave the same
        assert [r["val_loss"] for r in before.get(name, [])] == [
            r["val_loss"] for r in rows[: len(before.get(name, []))]
        ]
    assert set(trial_statuses(experiment).values()) == {"TERMINATED"}


def rerun(cmd: list[str], env: RayEnv, tmp_path: Path) -> str:
    """The same command again, to its end: its output (exit 0 asserted)."""
    log = tmp_path / "resumed.log"
    resumed = start(cmd, env, log)
    output = finish(resumed, log)
    assert resumed.returncode == 0, output[-3000:]
    return output


def resumed_once(experiment: Path, baseline: dict[str, Any], output: str) -> dict[str, list]:
    """After a re-run that dropped rows: every epoch reported once (result.json and
    progress.csv), with the uninterrupted run's numbers; the rows."""
    assert "reported after the last saved checkpoint are trained and reported again" in output
    after = histories(experiment)
    for name, rows in after.items():
        assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1)), name
        assert progress_epochs(experiment / name) == list(range(1, EPOCHS + 1)), name
    expected = by_downsample(histories(baseline["path"]))
    for downsample, rows in by_downsample(after).items():
        assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in expected[downsample]]
    return after


def test_a_raising_trial_does_not_sink_the_others(baseline: dict[str, Any]) -> None:
    assert baseline["code"] == 1  # the runner says some trials failed
    experiment = load_experiment(baseline["path"])
    status = {(t.config["downsample"], t.config["seed"]): t.status for t in experiment.trials}
    assert status == {
        ("maxpool", 51): "TERMINATED",
        ("stride", 51): "TERMINATED",
        ("maxpool", 52): "ERROR",
        ("stride", 52): "ERROR",
    }
    for trial in experiment.trials:
        if trial.status == "TERMINATED":
            assert [row["epoch"] for row in trial.history] == list(range(1, EPOCHS + 1))
    errors = list(baseline["path"].glob("*/error.txt"))
    assert len(errors) == 2 and all(MESSAGE in p.read_text() for p in errors)


def test_analysis_reports_the_failed_trials(baseline: dict[str, Any]) -> None:
    analysis = baseline["analysis"]
    assert analysis.returncode == 0, analysis.stderr[-2000:]
    out = analysis.stdout
    assert "concat-maxpool" in out and "concat-stride" in out  # the finished trials' table
    assert "2 trial(s) failed (ERROR)" in out, out


def test_checkpoint_every_resumes_after_its_last_checkpoint_each_epoch_once(
    tiny_raw: Path, tmp_path: Path, baseline: dict[str, Any]
) -> None:
    """--checkpoint-every 2: the driver killed while a trial holds after epoch 3 (reported, not
    checkpointed); the re-run resumes from epoch 2's checkpoint, trains epoch 3 again and
    reports every epoch once, with the uninterrupted run's numbers."""
    experiment = tmp_path / EXPERIMENT
    marker = tmp_path / "held"
    # The state saved at every step, so that it knows of epoch 3 when the driver dies.
    env = RayEnv(TUNE_GLOBAL_CHECKPOINT_S="0", **pause_env(marker, 3))
    cmd = faulty(fault_command(tiny_raw, tmp_path, "--checkpoint-every", "2"))
    try:
        log = tmp_path / "first.log"
        driver = start(cmd, env, log)
        try:
            wait_for(lambda: held_pid(marker), driver, "a trial held at epoch 3")
            wait_for(lambda: state_with(experiment, 3), driver, "a state that knows epoch 3")
            wait_for(lambda: max(map(len, histories(experiment).values())) >= 3, driver, "3")
            os.killpg(driver.pid, signal.SIGKILL)
        finally:
            finish(driver, log)
        held = [rows for rows in histories(experiment).values() if len(rows) == 3]
        assert held, "no trial had reported its unsaved epoch 3"
        output = rerun(cmd, env, tmp_path)
    finally:
        env.close()
    assert "1 epoch(s) reported after the last saved checkpoint are trained" in output
    for name, rows in resumed_once(experiment, baseline, output).items():
        saved = [row["epoch"] for row in rows if row.get("checkpoint_dir_name")]
        assert saved == [2, 4], (name, saved)  # every 2nd epoch and the last
    assert numbers_table(experiment) == numbers_table(baseline["path"])
