"""No process of a local Ray outlives the driver that started it by more than a few seconds:
the driver SIGKILLed, a second Ctrl-C from a terminal (sent to the driver and its Ray alike),
a clean exit; and where the watchdog itself was killed, the re-run stops what is left. Real
runs with a private Ray temp dir (RayEnv), and a fake driver for the watchdog alone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, RayEnv, finish, histories, run_command, start, wait_for

from tune_cilp.experiment.ray_watchdog import POLL_S

pytestmark = pytest.mark.slow  # real Ray runs and subprocesses

EPOCHS = 3  # the first trial reports epoch 1 well before the run ends
NAME = "seed-ablation"
GONE_WITHIN_S = 10.0
WATCHDOG = "ray_watchdog.py"


def describe(procs: list[psutil.Process]) -> list[str]:
    names = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            names.append(f"{proc.pid} {proc.name()}")
    return names


def running(proc: psutil.Process) -> bool:
    """Running and not a zombie (psutil matches the start time: never a recycled pid)."""
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def still_running(procs: list[psutil.Process], within: float) -> list[str]:
    """Those of `procs` still running after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in procs if running(p)]
        if not alive or time.monotonic() > deadline:
            return describe(alive)
        time.sleep(0.1)


def ray_of(env: RayEnv) -> list[psutil.Process]:
    """The run's processes (the driver's watchdog included), checked to hold what outlived a
    killed driver before: the agents and a trial's worker; and the GCS and raylet."""
    procs = env.leftovers()
    names = " ".join(describe(procs))
    for part in ("gcs_server", "raylet", "DashboardAgent", "RuntimeEnvAgent", "ray::ImplicitFunc"):
        assert part in names, names
    return procs


@pytest.fixture
def env() -> Iterator[RayEnv]:
    ray_env = RayEnv()
    yield ray_env
    ray_env.close()


def first_row(experiment: Path) -> bool:
    return any(rows for rows in histories(experiment).values())


@pytest.mark.parametrize("how", ["sigkill", "ctrl-c twice"])
def test_no_ray_process_outlives_the_driver(
    how: str, tiny_raw: Path, tmp_path: Path, env: RayEnv
) -> None:
    log = tmp_path / "run.log"
    proc = start(run_command(tiny_raw, tmp_path, "--epochs", str(EPOCHS)), env, log)
    try:
        wait_for(lambda: first_row(tmp_path / NAME), proc, "the first epoch")
        ray = ray_of(env)
        if how == "sigkill":
            proc.send_signal(signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
        else:  # as a terminal sends Ctrl-C: to the foreground group, the driver's Ray included
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        output = finish(proc, log)
    assert proc.returncode == (-signal.SIGKILL if how == "sigkill" else 130), output[-3000:]
    assert not still_running(ray, GONE_WITHIN_S)
    assert not env.leftovers(), describe(env.leftovers())  # nothing started later either


def test_after_a_killed_watchdog_the_rerun_stops_what_was_left(
    tiny_raw: Path, tmp_path: Path, env: RayEnv
) -> None:
    """The record-and-reap fallback; the re-run itself ends cleanly, leaving nothing behind."""
    cmd = run_command(tiny_raw, tmp_path, "--epochs", str(EPOCHS))
    log = tmp_path / "first.log"
    proc = start(cmd, env, log)
    try:
        wait_for(lambda: first_row(tmp_path / NAME), proc, "the first epoch")
        ray = ray_of(env)
        (watchdog,) = [p for p in ray if any(WATCHDOG in arg for arg in p.cmdline())]
        watchdog.kill()  # a zombie until its parent, the driver, ends
        wait_for(lambda: watchdog.status() == psutil.STATUS_ZOMBIE, proc, "the watchdog's end")
        proc.send_signal(signal.SIGKILL)
    finally:
        finish(proc, log)
    left = ray
    assert still_running(left, 2.0), "nothing left for the re-run to stop"  # the agents stay
    rerun = subprocess.run(cmd, env=env.env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "leftover Ray process(es) of this experiment's dead driver" in rerun.stdout
    assert not still_running(left, 0)
    assert not env.leftovers(), describe(env.leftovers())  # the clean exit: no wait needed


# The watchdog alone: a fake driver starts a "raylet" that dies with it (PR_SET_PDEATHSIG, as
# Ray's does) and whose "agent" ignores SIGTERM, plus a process of its own that is not Ray's.
AGENT = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
RAYLET = f"""
import ctypes, subprocess, sys, time
ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
time.sleep({2 * POLL_S})  # the agent starts after the watchdog's first look
subprocess.Popen([sys.executable, "-c", {AGENT!r}])
time.sleep(120)
"""
FAKE_DRIVER = f"""
import subprocess, sys, time
import psutil
from tune_cilp.experiment.ray_watchdog import start_watchdog
other = subprocess.Popen([sys.executable, "-c", {AGENT!r}])
raylet = subprocess.Popen([sys.executable, "-c", {RAYLET!r}])
start_watchdog([psutil.Process(raylet.pid)])
print(other.pid, raylet.pid, flush=True)
time.sleep(120)
"""


def test_the_watchdog_stops_exactly_what_the_driver_started_of_ray(tmp_path: Path) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", FAKE_DRIVER], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    started = psutil.Process(driver.pid).children(recursive=True)
    try:
        other_pid, raylet_pid = map(int, driver.stdout.readline().split())
        other, raylet = psutil.Process(other_pid), psutil.Process(raylet_pid)
        agents = wait_for(raylet.children, driver, "the agent")
        started = psutil.Process(driver.pid).children(recursive=True)
        (watchdog,) = [p for p in started if WATCHDOG in " ".join(p.cmdline())]
        assert os.getsid(watchdog.pid) == watchdog.pid  # a session of its own: no terminal's ^C
        time.sleep(2 * POLL_S)  # the watchdog has seen the agent
        # The raylet gone first (it goes with the driver, by its parent-death signal, but may
        # be gone before the watchdog wakes): the agent it left, which ignores SIGTERM, is no
        # one's child any more, and goes all the same; the driver's own process stays.
        raylet.kill()
        wait_for(lambda: all(a.ppid() != raylet.pid for a in agents), driver, "the raylet's end")
        driver.kill()
        driver.wait()
        assert not still_running([*agents, watchdog], 5.0)
        assert other.is_running()
    finally:
        driver.kill()
        driver.wait()
        for proc in started:  # this test's stragglers
            with contextlib.suppress(psutil.Error):
                proc.kill()
