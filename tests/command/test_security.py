"""Security: checkpoints never execute pickled code, no secret from the environment reaches a
file, and a local run's Ray session listens on loopback only, but for the servers Ray itself
binds wider (which refuse a call without the session's token)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from helpers import MkdirOnLoad, RayEnv, finish, run_command, start, wait_for

from tune_cilp.core.checkpoint import STATE_FILE, load_checkpoint
from tune_cilp.core.errors import UserError

pytestmark = pytest.mark.slow  # real Ray runs or subprocesses

FAKE_WANDB_KEY = "f4k3" * 10  # 40 characters, the shape of a W&B API key
FAKE_AWS_SECRET = "fakeAWSsecret/K7MDENG+bPxRfiCYEXAMPLEKEY"
SECRETS = (FAKE_WANDB_KEY.encode(), FAKE_AWS_SECRET.encode())
STATE_KEYS = {"config", "model", "best_model", "optimizer", "scheduler", "rng", "epoch"}


LOOPBACK = {"127.0.0.1", "::1"}
WILDCARD = {"0.0.0.0", "::"}
# Ray binds its gRPC servers -- the GCS, the raylet and every core worker (the driver and each
# ray:: worker) -- to every interface, with no option to narrow them (src/ray/rpc/
# grpc_server.cc), and its runtime-env agent to the node IP, which it never lets be loopback
# (ray._private.services.resolve_ip_for_localhost). Those listeners take only calls that carry
# the session's token: Ray's token authentication (RAY_AUTH_MODE=token), which ray.init turns on
# for a Ray it starts, in its own environment before it starts the session's processes (so
# /proc shows it in the gRPC servers' environment, not in the driver's); the agent (HTTP) is
# asked without the token while the session runs.
RAY_WIDE = {"gcs_server": WILDCARD, "raylet": WILDCARD, "worker": WILDCARD, "driver": WILDCARD}
RAY_NODE_IP = {"ray::RuntimeEnvAgent"}


@dataclass(frozen=True)
class Listener:
    """A socket of the run's session that takes connections (TCP) or datagrams (UDP)."""

    process: str  # gcs_server, raylet, driver, worker (a ray:: task or actor), or its name
    ip: str
    port: int
    auth_mode: str | None  # the process's RAY_AUTH_MODE


def process_kind(proc: psutil.Process, driver: int) -> str:
    title = (proc.cmdline() or [proc.name()])[0].strip()
    if proc.pid == driver:
        return "driver"
    # Idle, or the trial's actor in any of its methods (sampled in __init__ too, seen in CI).
    if title == "ray::IDLE" or title.startswith("ray::ImplicitFunc"):
        return "worker"
    if title.startswith("ray::"):
        return title.split()[0]  # ray::RuntimeEnvAgent, ray::DashboardAgent, ...
    return proc.name()


def session_listeners(driver: int, env: RayEnv) -> set[Listener]:
    """Every listening socket, right now, of every process of the run's Ray session: the driver,
    everything under it and anything else started with the run's private Ray temp dir."""
    procs = {proc.pid: proc for proc in env.leftovers()}
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(driver)
        procs.update({proc.pid: proc for proc in [root, *root.children(recursive=True)]})
    found = set()
    for proc in procs.values():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            sockets = [
                conn
                for conn in proc.net_connections(kind="inet")
                if conn.status == psutil.CONN_LISTEN
                or (conn.type == socket.SOCK_DGRAM and not conn.raddr)
            ]
            if sockets:
                kind, auth = process_kind(proc, driver), proc.environ().get("RAY_AUTH_MODE")
                found |= {Listener(kind, c.laddr.ip, c.laddr.port, auth) for c in sockets}
    return found


def unauthenticated_status(listener: Listener) -> int | str:
    """The HTTP status an HTTP listener answers a request without Ray's token with."""
    try:
        host = f"[{listener.ip}]" if ":" in listener.ip else listener.ip  # IPv6
        with urllib.request.urlopen(f"http://{host}:{listener.port}/", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return repr(exc)


def dashboard_cmdlines(env: RayEnv) -> list[list[str]]:
    """Command lines of the run's dashboard processes."""
    return [
        proc.info["cmdline"]
        for proc in env.leftovers()
        if any(arg.endswith("dashboard/dashboard.py") for arg in proc.info["cmdline"])
    ]


@pytest.fixture(scope="module")
def secret_run(
    tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A 2-epoch run with W&B offline, a fake W&B key and a fake AWS secret in the environment
    and a fresh HOME; its Ray session's listening sockets are sampled from its start until
    the first trial has reported (every part of the session up by then)."""
    root = tmp_path_factory.mktemp("secret_run")
    home = root / "home"
    home.mkdir()
    secrets = {"WANDB_API_KEY": FAKE_WANDB_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_AWS_SECRET}
    env = RayEnv(HOME=str(home), **secrets)
    env.env.pop("WANDB_MODE", None)
    storage = root / "results"
    cmd = run_command(tiny_raw, storage, "--epochs", "2", "--wandb", "offline")  # the last wins
    experiment = storage / "seed-ablation"
    run = start(cmd, env, root / "run.log")
    listeners: set[Listener] = set()

    def reported() -> bool:
        listeners.update(session_listeners(run.pid, env))
        return any(experiment.glob("*/result.json"))

    try:
        wait_for(reported, run, "the first result")
        dashboards = dashboard_cmdlines(env)
        listeners.update(session_listeners(run.pid, env))
        agents = [listener for listener in listeners if listener.process in RAY_NODE_IP]
        agent_answers = {listener: unauthenticated_status(listener) for listener in agents}
    finally:
        output = finish(run, root / "run.log")
    assert run.returncode == 0, output[-3000:]
    yield {
        "experiment": experiment,
        "home": home,
        "ray_tmp": Path(env.tmp),
        "dashboards": dashboards,
        "listeners": listeners,
        "agent_answers": agent_answers,
        "output": output,
    }
    env.close()


def test_checkpoints_the_tool_writes_load_with_weights_only(secret_run: dict[str, Any]) -> None:
    states = sorted(secret_run["experiment"].glob(f"*/checkpoint_*/{STATE_FILE}"))
    assert len(states) == 4  # 2 trials x 2 epochs
    for path in states:
        state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code needed
        assert set(state) >= STATE_KEYS
        assert load_checkpoint(path)["epoch"] == state["epoch"]


def test_checkpoint_carrying_pickled_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    # The payload is live: an unsafe load runs it.
    live = tmp_path / "live.pt"
    torch.save({"model": MkdirOnLoad(tmp_path / "ran_unsafely")}, live)
    unsafe = f"import torch; torch.load({str(live)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", unsafe], check=True, timeout=120)
    assert (tmp_path / "ran_unsafely").is_dir()

    marker = tmp_path / "ran"
    evil = tmp_path / "state.pt"
    torch.save({"config": {}, "model": MkdirOnLoad(marker)}, evil)
    with pytest.raises(UserError) as refused:
        load_checkpoint(evil)
    message = str(refused.value)
    assert message.startswith(f"{evil}: not a loadable checkpoint") and "\n" not in message
    assert not marker.exists()


def test_no_secret_from_the_environment_is_written(secret_run: dict[str, Any]) -> None:
    experiment, home = secret_run["experiment"], secret_run["home"]
    offline_runs = list((experiment / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2  # W&B did write its run folders (one per trial)
    # The experiment (with W&B's offline runs), HOME (W&B settings and cache, ~/.netrc) and the
    # Ray session's logs (its runtime-env agent logs runtime envs, where Tune puts AWS_* keys).
    scanned = [
        path
        for folder in (experiment, home, secret_run["ray_tmp"])
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    ]
    assert len(scanned) > 50
    leaks = [str(path) for path in scanned if any(s in path.read_bytes() for s in SECRETS)]
    assert not leaks
    assert not (home / ".netrc").exists()
    assert not any(s.decode() in secret_run["output"] for s in SECRETS)


def test_the_local_session_listens_on_loopback_or_behind_rays_token(
    secret_run: dict[str, Any],
) -> None:
    # The runner starts its local Ray without the dashboard UI; what Ray still starts of the
    # dashboard is bound to 127.0.0.1.
    dashboards = secret_run["dashboards"]
    assert len(dashboards) == 1, dashboards
    assert "--host=127.0.0.1" in dashboards[0]
    listeners = secret_run["listeners"]
    kinds = {listener.process for listener in listeners}
    assert {"gcs_server", "raylet", "driver", "worker"} <= kinds, listeners  # all sampled
    exposed = {listener for listener in listeners if listener.ip not in LOOPBACK}
    unexpected = [
        listener
        for listener in exposed
        if listener.ip not in RAY_WIDE.get(listener.process, set())
        and (listener.process not in RAY_NODE_IP or listener.ip in WILDCARD)
    ]
    assert not unexpected, unexpected  # anything else listens on loopback only
    grpc = {listener for listener in exposed if listener.process in RAY_WIDE}
    assert {listener.auth_mode for listener in grpc if listener.process != "driver"} == {"token"}
    answers = secret_run["agent_answers"]
    assert set(answers) == exposed - grpc and set(answers.values()) <= {401}, answers
