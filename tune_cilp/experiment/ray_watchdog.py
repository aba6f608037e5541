"""A watchdog for the local Ray a driver starts: when the driver ends, however it ends (a clean
exit, a second Ctrl-C, a crash, SIGKILL), the processes of that Ray end within about a second.

Ray ties its GCS and raylet to the driver (PR_SET_PDEATHSIG), but the raylet's own children
outlive both: DashboardAgent and RuntimeEnvAgent ignore SIGTERM and were still running 40 s
after the driver's SIGKILL (measured, Ray 2.60), and ray:: workers took 2-3 s to notice.
PR_SET_PDEATHSIG cannot reach them (a process sets it for itself, and the raylet's C++ starts
these), and Ray's own reaper process runs only where that kernel fate-sharing is missing (and
then kills the driver's whole process group).

So right after ray.init the driver starts this small process, in a session of its own (a
terminal's Ctrl-C does not reach it first), with the read end of a pipe as its stdin. Only the
driver holds the write end (os.pipe() is not inherited, and Popen closes every other
descriptor), so EOF means the driver is gone. Until then the watchdog notes, every POLL_S, what
Ray's processes have started (new ray:: workers); at EOF it SIGKILLs every noted process still
alive and what those started, and exits. Processes are noted by pid and start time, so a
recycled pid is never taken for one of them; only the processes ray.init started are watched,
never the driver's others or a joined cluster's. A clean exit closes the pipe itself and waits
for the watchdog (stop_watchdog): no watchdog is left behind either.

Run as a script (python -P FILE DRIVER_PID PID@START ...): it imports only psutil.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass

import psutil

POLL_S = 1.0  # how often the watchdog notes new processes (ray:: workers come and go)
KILL_WAIT_S = 5.0  # for the killed processes to be gone, and for the watchdog at a clean exit
SAME_START_S = 0.01  # start times as psutil reads them: equal within this, the same process


@dataclass(frozen=True)
class Watchdog:
    process: subprocess.Popen
    pipe: int  # the write end: closing it, or the driver's end, sets the watchdog off


def start_watchdog(processes: list[psutil.Process]) -> Watchdog:
    """Watch `processes` (those ray.init started) and what they start, for this driver."""
    read_end, write_end = os.pipe()
    try:
        args = [f"{p.pid}@{p.create_time()!r}" for p in processes if p.is_running()]
        process = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(__file__), str(os.getpid()), *args],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return Watchdog(process, write_end)


def stop_watchdog(watchdog: Watchdog) -> bool:
    """After ray.shutdown(): the watchdog stops what is left and exits; False if it had to be
    killed (then what it watched may be left: the session record is kept for the next run)."""
    os.close(watchdog.pipe)
    try:
        watchdog.process.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        watchdog.process.kill()
        watchdog.process.wait()
        return False
    return True


def same_process(pid: int, started: float) -> psutil.Process | None:
    """The running process `pid` if it started at `started` (not a later one given its pid)."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) < SAME_START_S:
            return proc
    return None


def with_descendants(processes: list[psutil.Process]) -> list[psutil.Process]:
    """`processes` (running ones) and everything they started, each once. One pass over the
    process table (Process.children would make one per process: the watchdog polls)."""
    children: dict[int, list[psutil.Process]] = defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        children[proc.info["ppid"]].append(proc)
    found: dict[int, psutil.Process] = {}
    todo = list(processes)
    while todo:
        proc = todo.pop()
        if proc.pid not in found:
            found[proc.pid] = proc
            todo += children.get(proc.pid, [])
    return list(found.values())


def kill_all(processes: list[psutil.Process]) -> int:
    """SIGKILL `processes` (Ray's agents ignore SIGTERM) and wait for them; how many were
    still running. psutil checks each one's start time before it signals."""
    killed = []
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed.append(proc)
    psutil.wait_procs(killed, timeout=KILL_WAIT_S)
    return len(killed)


def _watch(watched: list[psutil.Process]) -> None:
    known = set(watched)  # a psutil.Process is equal to another by pid and start time
    while True:
        ready, _, _ = select.select([0], [], [], POLL_S)
        if ready and not os.read(0, 4096):
            break  # EOF: the driver closed the pipe or is gone
        known.update(with_descendants([p for p in known if p.is_running()]))
    # What is still running, and what it started since the last look.
    kill_all(with_descendants([p for p in known if p.is_running()]))


def main(argv: list[str]) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):  # only EOF ends it (or SIGTERM/SIGKILL)
        signal.signal(sig, signal.SIG_IGN)
    watched = []
    for arg in argv[1:]:  # argv[0], the driver's pid: to name the watchdog in ps
        pid, _, started = arg.partition("@")
        proc = same_process(int(pid), float(started))
        if proc is not None:
            watched.append(proc)
    _watch(watched)


if __name__ == "__main__":
    main(sys.argv[1:])
