"""Security: checkpoints never execute pickled code, no secret from the environment reaches a
file, and the Ray dashboard of a local run listens on loopback only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
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


def dashboard_sockets(env: RayEnv) -> tuple[list[list[str]], list[tuple[str, int]]]:
    """Command lines of the run's dashboard processes and the addresses they listen on."""
    dashboards = [
        proc
        for proc in env.leftovers()
        if any(arg.endswith("dashboard/dashboard.py") for arg in proc.info["cmdline"])
    ]
    pids = {proc.pid for proc in dashboards}
    listening = [
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids
    ]
    return [proc.info["cmdline"] for proc in dashboards], listening


@pytest.fixture(scope="module")
def secret_run(
    tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A 2-epoch run with W&B offline, a fake W&B key and a fake AWS secret in the environment
    and a fresh HOME; its dashboard sockets are sampled while the trials run."""
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
    try:
        # Sample once the trials run (Ray and its dashboard are up by then).
        wait_for(lambda: list(experiment.glob("*/result.json")), run, "the first result")
        sampled = dashboard_sockets(env)
    finally:
        output = finish(run, root / "run.log")
    assert run.returncode == 0, output[-3000:]
    yield {
        "experiment": experiment,
        "home": home,
        "ray_tmp": Path(env.tmp),
        "dashboards": sampled[0],
        "listening": sampled[1],
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


def test_local_dashboard_listens_on_loopback_only(secret_run: dict[str, Any]) -> None:
    # The runner starts its local Ray without the dashboard UI; what Ray still starts of the
    # dashboard is bound to 127.0.0.1 and nothing of it listens elsewhere.
    dashboards = secret_run["dashboards"]
    assert len(dashboards) == 1, dashboards
    assert "--host=127.0.0.1" in dashboards[0]
    assert {ip for ip, _ in secret_run["listening"]} <= {"127.0.0.1"}, secret_run["listening"]
