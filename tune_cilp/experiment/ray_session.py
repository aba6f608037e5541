"""Start (or join) Ray for a driver, and clean up what a killed driver's local Ray left behind.

When the driver starts a local Ray and is then SIGKILLed, Ray's GCS and raylet go with it, but
its agents (DashboardAgent, RuntimeEnvAgent) stay alive and ignore SIGTERM. So a driver that
starts Ray records that session's process ids (with their start times, so a recycled pid is
never mistaken for one of ours) in the experiment directory; the next driver of the experiment,
holding the experiment's lock (so the recorder is dead), kills exactly those processes. Never by
name: other Ray sessions may share the machine.
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

SESSION_FILE = ".ray_session.json"
DEFAULT_GCS_PORT = 6379
CONNECT_TIMEOUT_S = 3.0
KILL_WAIT_S = 5.0


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


def start_ray(address: str | None, env: dict[str, str], record_dir: str | None = None) -> bool:
    """Connect to (or start) Ray; True if this call started it. An initialised Ray is reused.

    record_dir: where to record a Ray this call starts (see the module docstring); None = don't.
    """
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
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False)
    except ConnectionError as exc:
        raise UserError(f"--address: cannot connect to Ray at {address} ({exc})") from None
    if record_dir is not None and address is None:
        record_session(Path(record_dir) / SESSION_FILE)
    return True


def record_session(path: Path) -> None:
    """Write the pids and start times of this process's descendants (the Ray it started)."""
    procs = []
    for proc in psutil.Process().children(recursive=True):
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
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    survivors = []
    for entry in record.get("processes", []):
        with contextlib.suppress(psutil.Error, KeyError, TypeError):
            proc = psutil.Process(int(entry["pid"]))
            if abs(proc.create_time() - float(entry["started"])) < 0.01:
                survivors.append(proc)
    for proc in survivors:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # SIGKILL: the agents ignore SIGTERM
    psutil.wait_procs(survivors, timeout=KILL_WAIT_S)
    path.unlink(missing_ok=True)
    return len(survivors)


def forget_session(record_dir: str | None) -> None:
    """Remove the record after a clean ray.shutdown()."""
    if record_dir is not None:
        (Path(record_dir) / SESSION_FILE).unlink(missing_ok=True)
