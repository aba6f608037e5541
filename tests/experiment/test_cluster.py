"""A real two-node Ray cluster on this machine (`ray start --head` + `ray start --address`,
loopback only, one CPU each): `python -m tune_cilp.run --address` spreads its trials over both
nodes, and survives the loss of the second node mid-experiment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, histories

pytestmark = pytest.mark.slow  # real Ray runs or subprocesses

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def statuses(experiment: Path) -> list[str]:
    from analysis import load_experiment

    return [t.status for t in load_experiment(experiment).trials]


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    temp_dir: str
    head: subprocess.Popen
    worker: subprocess.Popen
    head_node: str = ""
    worker_node: str = ""

    def node_id(self, node: subprocess.Popen) -> str:
        """The node id of the raylet that a `ray start --block` process started."""
        for proc in psutil.Process(node.pid).children(recursive=True):
            args = proc.cmdline()
            if args and args[0].endswith("/raylet"):
                ids = [a.split("=", 1)[1] for a in args if a.startswith("--node_id=")]
                return ids[0]
        raise AssertionError(f"no raylet under process {node.pid}")

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster still running (they all name its temp dir)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if any(self.temp_dir in arg for arg in proc.info["cmdline"] or ()):
                found.append(proc)
        return found


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Ray maps --node-ip-address 127.0.0.1 to this machine's own address (it wants addresses
    # other nodes can reach); the nodes' traffic stays on this machine either way.
    with open(log, "w") as out:
        return subprocess.Popen(
            [RAY, "start", "--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped without touching others'
        )


def wait_started(node: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Ray runtime started" not in log.read_text():
        assert node.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def stop(cluster_procs: list[subprocess.Popen], cluster: Cluster | None) -> None:
    """Stop the nodes this test started: their process groups, then anything left that names
    the cluster's temp dir. Never `ray stop`, which stops every Ray on the machine."""
    for proc in cluster_procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if cluster is not None:
        for proc in cluster.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("cluster_logs")
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths live here
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        # Ray 2.60 authenticates every node and driver with a token: a private one here.
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=uuid.uuid4().hex,
        # Declare a lost node dead within seconds (default: about 15 s).
        RAY_health_check_period_ms="1000",
        RAY_health_check_timeout_ms="1000",
        RAY_health_check_failure_threshold="3",
    )
    started: list[subprocess.Popen] = []
    result = None
    try:
        head_args = ["--head", "--port", str(port), "--temp-dir", temp_dir]
        head_args += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(free_port())]
        head = start_node(head_args, env, logs / "head.log")
        started.append(head)
        wait_started(head, logs / "head.log")
        address = f"127.0.0.1:{port}"
        worker = start_node(["--address", address], env, logs / "worker.log")
        started.append(worker)
        wait_started(worker, logs / "worker.log")
        result = Cluster(address, env, temp_dir, head, worker)
        result.head_node = result.node_id(head)
        result.worker_node = result.node_id(worker)
        yield result
    finally:
        stop(started, result)
        if result is None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def runner(cluster: Cluster, dataset: Path, storage: Path, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "tune_cilp.run", "--address", cluster.address),
        *("--dataset", str(dataset), "--storage-path", str(storage), "--wandb", "disabled"),
        *extra,
    ]


def test_trials_run_on_both_nodes_and_results_are_complete(
    cluster: Cluster, tiny_raw: Path, tmp_path: Path
) -> None:
    cmd = runner(cluster, tiny_raw, tmp_path, "--epochs", "2")
    run = subprocess.run(
        cmd, cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    experiment = tmp_path / "seed-ablation"
    runs = histories(experiment)
    assert len(runs) == 2
    for rows in runs.values():
        assert [row["epoch"] for row in rows] == [1, 2]
        assert all(row["val_loss"] is not None for row in rows)
        assert len({row["node_id"] for row in rows}) == 1
    # One CPU per node and one per trial: the two trials ran at once, one on each node.
    nodes = {rows[0]["node_id"] for rows in runs.values()}
    assert nodes == {cluster.head_node, cluster.worker_node}
    assert statuses(experiment) == ["TERMINATED", "TERMINATED"]
    assert "concat-maxpool" in run.stdout.split("starting trials")[-1]  # the final table


def test_experiment_completes_when_the_second_node_dies(
    cluster: Cluster, tiny_raw: Path, tmp_path: Path
) -> None:
    # Results reach the storage a little after the trial computed them, and tiny-data epochs are
    # short: kill only a trial seen in its first quarter, so it is surely still running.
    epochs = 20
    experiment = tmp_path / "seed-ablation"
    cmd = runner(cluster, tiny_raw, tmp_path, "--epochs", str(epochs), "--seeds", "51,52")
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(
            [*cmd, "--max-failures", "2"],
            cwd=ROOT,
            env=cluster.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    killed = None
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while killed is None:
            assert driver.poll() is None, "run ended before the node could be killed"
            assert time.monotonic() < deadline, "no trial reported on the second node"
            for name, rows in histories(experiment).items():
                running_there = rows and rows[-1]["node_id"] == cluster.worker_node
                if running_there and rows[-1]["epoch"] <= epochs // 4:
                    os.killpg(cluster.worker.pid, signal.SIGKILL)  # the whole node at once
                    cluster.worker.wait()
                    killed = name
                    break
            time.sleep(0.05)
        driver.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    output = log.read_text()
    assert driver.returncode == 0, output[-4000:]
    runs = histories(experiment)
    assert len(runs) == 4
    for name, rows in runs.items():
        if name != killed:
            assert [row["epoch"] for row in rows] == list(range(1, epochs + 1)), name  # once
    # The trial on the lost node went on from its checkpoint on the surviving (head) node. An
    # epoch whose report reached the driver just before the node died, but whose checkpoint
    # did not become the one to restore, is trained again: it must report the same numbers.
    by_epoch: dict[int, dict] = {}
    for row in runs[killed]:
        if row["epoch"] in by_epoch:
            assert row["val_loss"] == by_epoch[row["epoch"]]["val_loss"], row["epoch"]
        by_epoch[row["epoch"]] = row
    assert sorted(by_epoch) == list(range(1, epochs + 1))
    assert len(runs[killed]) <= epochs + 1  # at most the one epoch in flight again
    nodes = [by_epoch[e]["node_id"] for e in sorted(by_epoch)]
    on_worker = nodes.index(cluster.head_node) if cluster.head_node in nodes else len(nodes)
    assert 1 <= on_worker < epochs, nodes
    assert nodes == [cluster.worker_node] * on_worker + [cluster.head_node] * (epochs - on_worker)
    assert statuses(experiment) == ["TERMINATED"] * 4
