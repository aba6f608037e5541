"""Never a silently wrong table: each way a re-run, a second driver, an interrupt, a full disk or
a killed driver used to mix, lose or half-write results, run for real (real Ray, real files, a
real small file system) and checked for its exit code, its one line, and what is stored."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from helpers import (
    RayEnv,
    error_lines,
    finish,
    histories,
    mount,
    run_command,
    snapshot,
    start,
    tmpfs,
    trial_statuses,
    wait_for,
)

from tune_cilp.experiment.identity import META_FILE
from tune_cilp.experiment.lock import LOCK_FILE, local_lock

pytestmark = pytest.mark.slow

EPOCHS = 6
NAME = "seed-ablation"


def run(cmd: list[str], env: RayEnv) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env.env, capture_output=True, text=True, timeout=300)


def first_row(experiment: Path) -> bool:
    return any(rows for rows in histories(experiment).values())


def val_losses(experiment: Path) -> dict[str, list[float]]:
    """Per downsampling, the val_loss of every epoch (the runs' common configurations); an
    epoch reported twice (see assert_every_epoch_once) counts once, last report winning, as in
    the analysis."""
    return {
        rows[0]["config"]["downsample"]: list({r["epoch"]: r["val_loss"] for r in rows}.values())
        for rows in histories(experiment).values()
    }


def assert_every_epoch_once(experiment: Path, hard_stop: dict[str, list] | None = None) -> None:
    """Each trial reported epochs 1..EPOCHS once. After a hard stop (`hard_stop`: the rows
    reported before it) one epoch may be reported twice: a stop between an epoch's report and
    Tune's saving of the state that names its checkpoint resumes from the checkpoint before,
    so that epoch runs again (the analysis keeps the last report); never more than that one."""
    runs = histories(experiment)
    assert len(runs) == 2
    for name, rows in runs.items():
        epochs = [row["epoch"] for row in rows]
        if hard_stop is not None and hard_stop.get(name):
            n = len(hard_stop[name])
            assert epochs[:n] == list(range(1, n + 1)), name
            if epochs[n : n + 1] == [n]:  # the last epoch before the stop, run again
                del epochs[n]
        assert epochs == list(range(1, EPOCHS + 1)), name
    assert set(trial_statuses(experiment).values()) == {"TERMINATED"}


@pytest.fixture(scope="module")
def data(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny raw set that one test changes (and changes back)."""
    out = tmp_path_factory.mktemp("data") / "raw"
    shutil.copytree(tiny_raw, out)
    return out


@pytest.fixture(scope="module")
def two_drivers(data: Path, tmp_path_factory: pytest.TempPathFactory, ray_env: RayEnv) -> dict:
    """The same command started twice at once on one experiment."""
    storage = tmp_path_factory.mktemp("two_drivers")
    cmd = run_command(data, storage, "--epochs", str(EPOCHS))
    procs = [start(cmd, ray_env, storage / f"driver{i}.log") for i in range(2)]
    outputs = [finish(proc, storage / f"driver{i}.log") for i, proc in enumerate(procs)]
    return {"experiment": storage / NAME, "procs": procs, "outputs": outputs}


def test_second_driver_is_refused_and_the_first_finishes_untouched(two_drivers: dict) -> None:
    codes = sorted(proc.returncode for proc in two_drivers["procs"])
    assert codes == [0, 2], "\n".join(out[-2000:] for out in two_drivers["outputs"])
    winner, loser = sorted(range(2), key=lambda i: two_drivers["procs"][i].returncode)
    (line,) = error_lines(two_drivers["outputs"][loser])
    assert "another driver is running this experiment" in line and "use another --name" in line
    assert f"pid {two_drivers['procs'][winner].pid} on" in line
    experiment = two_drivers["experiment"]
    assert len(list(experiment.glob("experiment_state-*.json"))) == 1
    assert_every_epoch_once(experiment)


def identity_cases(data: Path, other: Path) -> list[tuple[str, list[str], str]]:
    return [
        ("other data", ["--dataset", str(other)], f"made with {data}, not {other}"),
        ("other epochs", ["--epochs", "3"], f"--epochs: this experiment was made with {EPOCHS}"),
        ("seeds added", ["--seeds", "1,2"], "--seeds: this experiment was made with the default"),
        ("other precision", ["--precision", "fp32"], "--precision: this experiment was made"),
        ("smoke test", ["--smoke-test"], "--smoke-test: this experiment was made with off"),
    ]


def test_rerun_with_other_settings_refuses_naming_each_difference_even_while_locked(
    two_drivers: dict, data: Path, tiny_raw: Path, ray_env: RayEnv
) -> None:
    experiment = two_drivers["experiment"]
    storage = experiment.parent
    base = ["--epochs", str(EPOCHS)]
    cases = identity_cases(data, tiny_raw)
    before = snapshot(storage)

    def rerun(extra: list[str]) -> subprocess.CompletedProcess:
        args = [*base, *extra]
        if "--dataset" in extra:  # replaces the first --dataset
            cmd = run_command(Path(extra[1]), storage, *base)
        else:
            cmd = run_command(data, storage, *args)
        return run(cmd, ray_env)

    # Held by "another driver" throughout: a rerun with other settings is refused for them,
    # not for the lock (three reruns at once used to collide on it and say "another driver").
    with local_lock(str(experiment)), ThreadPoolExecutor(max_workers=3) as pool:
        procs = list(pool.map(rerun, [extra for _, extra, _ in cases]))
    wrong = []
    for (case, _, expected), proc in zip(cases, procs, strict=True):
        lines = error_lines(proc.stderr)
        if proc.returncode != 2 or len(lines) != 1 or expected not in lines[0]:
            wrong.append(f"{case}: exit {proc.returncode}, stderr {proc.stderr[-800:]!r}")
        elif "use a new --name for a new experiment" not in lines[0]:
            wrong.append(f"{case}: no advice in {lines[0]!r}")
    assert not wrong, "\n".join(wrong)
    assert snapshot(storage) == before


def test_rerun_after_the_data_changed_under_the_same_path_refuses(
    two_drivers: dict, data: Path, ray_env: RayEnv
) -> None:
    storage = two_drivers["experiment"].parent
    png = data / "cubes" / "rgb" / "0000.png"
    original = png.read_bytes()
    shutil.copy(data / "cubes" / "rgb" / "0001.png", png)
    before = snapshot(storage)
    try:
        proc = run(run_command(data, storage, "--epochs", str(EPOCHS)), ray_env)
    finally:
        png.write_bytes(original)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert f"--dataset: the data at {data} changed since this experiment was made" in line
    assert snapshot(storage) == before


def test_rerun_of_a_finished_experiment_prints_its_table(
    two_drivers: dict, data: Path, ray_env: RayEnv
) -> None:
    storage = two_drivers["experiment"].parent
    before = snapshot(storage)
    proc = run(run_command(data, storage, "--epochs", str(EPOCHS)), ray_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "is finished" in proc.stdout and "concat-maxpool" in proc.stdout
    assert "starting trials" not in proc.stdout  # no Ray, no trial
    assert snapshot(storage) == before
    meta = json.loads((two_drivers["experiment"] / META_FILE).read_text())
    assert meta["dataset"] == str(data) and meta["epochs"] == EPOCHS and meta["finished_at"]


@pytest.mark.parametrize(
    ("signals", "case"),
    [((signal.SIGINT,), "ctrl-c"), ((signal.SIGTERM,), "sigterm"), ((signal.SIGINT,) * 2, "twice")],
)
def test_interrupt_exits_130_and_the_same_command_resumes(
    signals: tuple[int, ...],
    case: str,
    data: Path,
    two_drivers: dict,
    tmp_path: Path,
    ray_env: RayEnv,
) -> None:
    cmd = run_command(data, tmp_path, "--epochs", str(EPOCHS))
    experiment = tmp_path / NAME
    proc = start(cmd, ray_env, tmp_path / "first.log")
    try:
        wait_for(lambda: first_row(experiment), proc, "the first epoch")
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.2)
    finally:
        output = finish(proc, tmp_path / "first.log")
    assert proc.returncode == 130, output[-3000:]
    assert output.rstrip().endswith("interrupted: re-run the same command to resume"), output[-800:]
    assert "Tuner.restore" not in output and "Traceback" not in output
    partial = histories(experiment)
    assert min(len(rows) for rows in partial.values()) < EPOCHS, "interrupted too late to tell"
    if len(signals) == 1:  # stopped at an epoch's end: every epoch so far has its checkpoint
        for name, rows in partial.items():
            assert (experiment / name / f"checkpoint_{len(rows) - 1:06d}").is_dir(), name

    resumed = run(cmd, ray_env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming experiment" in resumed.stdout
    assert_every_epoch_once(experiment, partial if len(signals) > 1 else None)
    assert val_losses(experiment) == val_losses(two_drivers["experiment"])  # as if never stopped


def test_full_disk_stops_with_one_line_and_leaves_no_empty_files(
    data: Path, two_drivers: dict, tmp_path: Path, ray_env: RayEnv
) -> None:
    # 40 MiB: the first checkpoint (~34 MB: weights, best weights, Adam's two moments) fits, the
    # second does not, so the disk fills in the middle of a run, after Tune has saved a state.
    with tmpfs(tmp_path / "small", "40m") as storage:
        cmd = run_command(data, storage, "--epochs", str(EPOCHS))
        full = run(cmd, ray_env)
        out = full.stdout + full.stderr
        assert full.returncode == 1, out[-3000:]
        (line,) = error_lines(full.stderr)
        assert line.startswith(f"error: no space left on device writing {storage / NAME}")
        # Resumable, or -- when Tune's own state file was cut short -- set aside and run again.
        assert line.endswith(("re-run the same command to resume", "to run the experiment again"))
        assert "Traceback" not in out, out[-3000:]
        empty = [p for p in storage.rglob("*") if p.is_file() and p.stat().st_size == 0]
        assert [p.name for p in empty] in ([], [".validate_storage_marker"]), empty  # Ray's own

        subprocess.run(["mount", "-o", "remount,size=600m", str(storage)], check=True)
        resumed = run(cmd, ray_env)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
        assert_every_epoch_once(storage / NAME)
        assert val_losses(storage / NAME) == val_losses(two_drivers["experiment"])
        # One experiment in the folder: a state set aside took its trials' folders with it.
        trials = {rows[0]["trial_id"] for rows in histories(storage / NAME).values()}
        assert trials == set(trial_statuses(storage / NAME))


def descendants(pid: int) -> dict[tuple[int, float], str]:
    """Every process under pid: (pid, start time) -> name (a pid reused later is another
    process: its start time differs)."""
    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            found[(child.pid, child.create_time())] = child.name()
    return found


def test_killed_driver_leaves_no_process_after_the_rerun(
    data: Path, tmp_path: Path, ray_env: RayEnv
) -> None:
    cmd = run_command(data, tmp_path, "--epochs", str(EPOCHS))
    proc = start(cmd, ray_env, tmp_path / "first.log")
    try:
        wait_for(lambda: first_row(tmp_path / NAME), proc, "the first epoch")
        spawned = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
    finally:
        finish(proc, tmp_path / "first.log")
    # Ray's own processes (GCS, raylet, ray:: workers and agents) ran: there is something to reap.
    assert {"gcs_server", "raylet"} <= set(spawned.values()), spawned
    assert any(name.startswith("ray::") for name in spawned.values()), spawned
    resumed = run(cmd, ray_env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    alive = []
    for (pid, created), name in spawned.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).create_time() == created:
                alive.append(f"{pid} {name}")
    assert not alive, f"processes of the killed run still alive: {alive}"


def test_read_only_experiment_directory_is_one_line(
    two_drivers: dict, data: Path, tmp_path: Path, ray_env: RayEnv
) -> None:
    copy = tmp_path / "results" / NAME
    shutil.copytree(two_drivers["experiment"], copy)
    mount("--bind", str(copy), str(copy))
    try:
        mount("-o", "remount,ro,bind", str(copy))
        before = snapshot(copy)
        proc = run(run_command(data, copy.parent, "--epochs", str(EPOCHS)), ray_env)
    finally:
        subprocess.run(["umount", str(copy)], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert f"{copy / LOCK_FILE}: cannot create the driver lock (Read-only file system)" in line
    assert snapshot(copy) == before


def test_interrupt_during_start_up_is_not_lost(data: Path, tmp_path: Path, ray_env: RayEnv) -> None:
    # ray.init used to swallow a Ctrl-C that came while it started the local cluster.
    log = tmp_path / "run.log"
    proc = start(run_command(data, tmp_path, "--epochs", str(EPOCHS)), ray_env, log)
    try:
        wait_for(lambda: "experiment:" in log.read_text(), proc, "the driver's first line")
        proc.send_signal(signal.SIGINT)
    finally:
        output = finish(proc, log)
    assert proc.returncode == 130, output[-3000:]
    assert output.rstrip().endswith("interrupted: re-run the same command to resume")
    assert not any(rows for rows in histories(tmp_path / NAME).values())  # no epoch was run
