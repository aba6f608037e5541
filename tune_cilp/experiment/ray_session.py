"""Start (or join) Ray for a driver, and leave nothing of a local Ray it started behind.

When the driver starts a local Ray and is then SIGKILLed, Ray's GCS and raylet go with it, but
its agents (DashboardAgent, RuntimeEnvAgent) stay alive and ignore SIGTERM. So a driver that
starts Ray starts a watchdog (ray_watchdog.py) that stops that Ray's processes as soon as the
driver ends, however it ends. As a fallback for a watchdog that was itself killed, the driver
also records the processes ray.init started (and the watchdog) with their start times, so a
recycled pid is never mistaken for one of ours, in the experiment directory; the next driver of
the experiment, holding the experiment's lock (so the recorder is dead), kills exactly those
processes. Never by name: other Ray sessions may share the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import psutil
import ray

from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.errors import UserError
from tune_cilp.core.json_shape import json_object
from tune_cilp.core.path_guard import check_readable_file
from tune_cilp.experiment.ray_places import check_local_ray_places
from tune_cilp.experiment.ray_watchdog import (
    Watchdog,
    kill_all,
    same_process,
    start_watchdog,
    stop_watchdog,
)

SESSION_FILE = ".ray_session.json"
DEFAULT_GCS_PORT = 6379
CONNECT_TIMEOUT_S = 3.0

_watchdog: Watchdog | None = None  # of the local Ray this process started, like Ray's own state


def check_address(address: str | None) -> None:
    """Fail fast on an unreachable cluster: ray.init would retry for minutes."""
    if address is None or address == "auto":
        return  # auto: ray.init itself fails at once when no local cluster is running
    host_port = address.removeprefix("ray://")
    host, _, port_text = host_port.rpartition(":")
    if not host:
        host, port_text = host_port, str(DEFAULT_GCS_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise UserError(f"--address: expected host:port or auto, got {address!r}") from None
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(f"--address: cannot reach a Ray cluster at {address} ({exc})") from None


def check_ray_can_start(address: str | None) -> None:
    """Where start_ray will start a local Ray, the places it writes are checked (UserError):
    called before the driver writes anything, so a refusal leaves nothing behind."""
    if address is None and not os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        check_local_ray_places()


def start_ray(address: str | None, env: dict[str, str], record_dir: str | None = None) -> bool:
    """Connect to (or start) Ray; True if this call started it. An initialised Ray is reused.

    record_dir: where to record a Ray this call starts (see the module docstring); None = don't.
    """
    global _watchdog
    if ray.is_initialized():
        return False
    # Ray's runtime-env agent logs every runtime env at INFO, env_vars included: Tune puts the
    # AWS_* credentials there for each trial, the W&B callback the API key. At "warning" a local
    # Ray writes neither to its session logs.
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")
    # A Ray started here prestarts one idle worker per CPU for the driver's job, but Tune gives
    # every trial a runtime env of its own (env_vars), so none of them can host a trial: they
    # only take ~0.5 s of CPU each while the trial's own worker starts (a joined cluster keeps
    # its setting: the raylet reads it when it starts).
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    before = set(psutil.Process().children(recursive=True))
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False)
    except ConnectionError as exc:
        raise UserError(f"--address: cannot connect to Ray at {address} ({exc})") from None
    # What ray.init started (none where it joined a cluster, e.g. through RAY_ADDRESS); never
    # the driver's other processes.
    started = [p for p in psutil.Process().children(recursive=True) if p not in before]
    if address is None and started:
        _watchdog = start_watchdog(started)
        if record_dir is not None:
            watchdog = psutil.Process(_watchdog.process.pid)
            record_session(Path(record_dir) / SESSION_FILE, [*started, watchdog])
    return True


def record_session(path: Path, processes: list[psutil.Process]) -> None:
    """Write the pids and start times of `processes` (the Ray this driver started)."""
    procs = []
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            procs.append({"pid": proc.pid, "started": proc.create_time()})
    with atomic_output(path, "w") as f:
        json.dump({"driver": os.getpid(), "processes": procs}, f)


def reap_dead_session(record_dir: str) -> int:
    """Kill the surviving processes of a dead driver's recorded Ray session; how many were left.

    Call only while holding the experiment's driver lock: the recorder is then gone.
    """
    path = Path(record_dir) / SESSION_FILE
    try:
        record = json_object(check_readable_file(path).read_text())  # a FIFO would block
        entries = record.get("processes", [])
        if not isinstance(entries, list):
            return 0
    except (OSError, ValueError, UserError):
        return 0
    survivors = []
    for entry in entries:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            proc = same_process(int(entry["pid"]), float(entry["started"]))
            if proc is not None:
                survivors.append(proc)
    killed = kill_all(survivors)  # exactly those: the record is a file anyone may have edited
    path.unlink(missing_ok=True)
    return killed


def stop_ray(record_dir: str | None) -> None:
    """ray.shutdown(); for a local Ray started here, its watchdog then stops what is left and
    exits, and the record goes (kept where the watchdog had to be killed)."""
    global _watchdog
    try:
        ray.shutdown()
    finally:
        watchdog, _watchdog = _watchdog, None
        if (watchdog is None or stop_watchdog(watchdog)) and record_dir is not None:
            (Path(record_dir) / SESSION_FILE).unlink(missing_ok=True)
