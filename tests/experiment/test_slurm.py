"""deploy/slurm/tune_cilp.sbatch on a real SLURM cluster started on this machine (munged,
slurmctld and one slurmd per SLURM node, two nodes on the one machine, with a private key,
config, ports and state; stopped by pid afterwards): a one-node job run to its table, a job
cancelled mid-run whose resubmission resumes the experiment, a two-node job (the second node's
Ray through srun), the script's bad inputs. After every job no process of it is left. And the
`sbatch` lines the docs show pass the runner's argument checks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, error_lines, histories, run_analysis, run_command, trial_statuses

from tune_cilp.run import check_applies
from tune_cilp.run_args import build_parser, parse_request
from tune_cilp.spaces import get_space

SBATCH_SCRIPT = ROOT / "deploy" / "slurm" / "tune_cilp.sbatch"
SLURM_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scancel", "scontrol", "sinfo")
# The daemons live in sbin, which a non-login PATH may lack.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
PROGRAMS = {name: shutil.which(name, path=SEARCH_PATH) for name in SLURM_PROGRAMS}
MISSING = [name for name, path in PROGRAMS.items() if path is None]
CPUS = 2  # each node's CPUs as SLURM sees them; each job asks for all of them
NODES = 2  # SLURM nodes, all of them this machine (one slurmd each)
START_TIMEOUT_S = 30
JOB_TIMEOUT_S = 240
GONE_TIMEOUT_S = 10
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
EXPERIMENT = "seed-ablation"

# Every test but the documentation's check starts jobs on a real SLURM.
SLURM_MARKS = (
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"SLURM is not installed (no {', '.join(MISSING)})"),
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd starts jobs as their user: needs root"),
)


def slurm_test(test: Callable) -> Callable:
    """`test` with SLURM_MARKS."""
    for mark in SLURM_MARKS:
        test = mark(test)
    return test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Slurm:
    """A running one-node cluster: its name, the environment its clients and jobs use, its
    folder, and the output file of every job submitted to it."""

    name: str
    env: dict[str, str]
    home: Path
    outputs: dict[str, Path] = field(default_factory=dict)

    def client(self, *args: str) -> str:
        """A SLURM client command's output (raises on failure)."""
        return subprocess.run(
            [PROGRAMS[args[0]] or args[0], *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    def submit(
        self, out: Path, *run_args: str, env: dict[str, str] | None = None, nodes: int = 1
    ) -> str:
        """`sbatch deploy/slurm/tune_cilp.sbatch RUN_ARGS` from the repository root, on `nodes`
        nodes; the job id."""
        proc = subprocess.run(
            [PROGRAMS["sbatch"], "--parsable", f"--nodes={nodes}", f"--cpus-per-task={CPUS}"]
            + [f"--output={out}", str(SBATCH_SCRIPT), *run_args],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        job_id = proc.stdout.strip().split(";")[0]
        self.outputs[job_id] = out
        return job_id

    def job(self, job_id: str) -> dict[str, str]:
        """The job's record (`scontrol show job`) as key -> value."""
        text = self.client("scontrol", "show", "job", "--oneliner", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, str]:
        """The job's record once it has ended."""
        deadline = time.monotonic() + timeout
        while (record := self.job(job_id))["JobState"] not in FINAL_STATES:
            assert time.monotonic() < deadline, f"job {job_id} still {record['JobState']}"
            time.sleep(0.5)
        return record

    def ray_temp_dir(self, job_id: str) -> str | None:
        """The job's Ray temp dir, as its output names it (None before Ray started)."""
        with contextlib.suppress(OSError):
            text = self.outputs[job_id].read_text()
            if found := re.search(r"^ray: head \S+ on \S+, temp dir (\S+),", text, re.M):
                return found.group(1)
        return None

    def processes(self, *job_ids: str) -> list[psutil.Process]:
        """The live processes of these jobs (default: every job submitted here): those with a
        job's SLURM variables (its shell, the driver, `ray start`), or a file of its Ray temp
        dir open (all of Ray's keep their logs there open; Ray's agents and workers rename
        themselves and may overwrite their environment with the new name)."""
        job_ids = job_ids or tuple(self.outputs)
        temp_dirs = tuple(f"{d}/" for d in map(self.ray_temp_dir, job_ids) if d is not None)
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                # A killed child of a dead parent may stay a zombie under a container's init,
                # which reaps nothing: it holds no memory, no port, no file.
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                env = proc.environ()
                ours = env.get("SLURM_CLUSTER_NAME") == self.name
                if (ours and env.get("SLURM_JOB_ID") in job_ids) or opens(proc.pid, temp_dirs):
                    found.append(proc)
        return found

    def assert_nothing_left(self, job_id: str) -> None:
        """No process of the job runs any more, and its Ray temp dir is gone."""
        temp_dir = self.ray_temp_dir(job_id)
        assert temp_dir, self.outputs[job_id].read_text()[-3000:]
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while (left := self.processes(job_id)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, [" ".join(p.cmdline()) for p in left]
        assert not Path(temp_dir).exists()


def opens(pid: int, folders: tuple[str, ...]) -> bool:
    """Whether process `pid` has a file under one of `folders` open (deleted since, or not)."""
    fds = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                if os.readlink(f"{fds}/{fd}").startswith(folders):
                    return True
    return False


def start_daemon(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def slurm_conf(name: str, home: Path, host: str, nodes: list[str]) -> str:
    """A cluster whose name, paths and ports are private; every node is this machine."""
    return "\n".join(
        [
            f"ClusterName={name}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={home}/sock/munge.socket",
            f"StateSaveLocation={home}/state",
            f"SlurmdSpoolDir={home}/spool/%n",
            f"SlurmctldPidFile={home}/slurmctld.pid",
            f"SlurmdPidFile={home}/slurmd-%n.pid",
            f"SlurmctldLogFile={home}/slurmctld.log",
            f"SlurmdLogFile={home}/slurmd-%n.log",
            # No cgroups: the processes of a job are tracked by their parent chain.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "ReturnToService=2",
            # The node is described here, whatever this machine has.
            "SlurmdParameters=config_overrides",
            *(
                f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={free_port()} "
                f"CPUs={CPUS} State=UNKNOWN"
                for node in nodes
            ),
            f"PartitionName=test Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def stop_daemons(daemons: list[subprocess.Popen], cluster: Slurm | None) -> None:
    """The daemons by pid, then any process of the cluster's jobs that a failed test left."""
    for proc in reversed(daemons):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for proc in cluster.processes() if cluster else []:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@pytest.fixture(scope="module")
def slurm() -> Iterator[Slurm]:
    # Short: munge's socket path is limited like Ray's. The socket's folder must be searchable
    # by everyone (munged checks), the key's private.
    home = Path(tempfile.mkdtemp(prefix="sl", dir="/tmp"))
    home.chmod(0o755)
    for folder, mode in (("sock", 0o755), ("munge", 0o700), ("state", 0o700), ("spool", 0o700)):
        (home / folder).mkdir(mode=mode)
    key = home / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    nodes = [host, *(f"{host}-{i}" for i in range(2, NODES + 1))]
    for node in nodes:
        (home / "spool" / node).mkdir()
    name = f"tunecilp{secrets.token_hex(4)}"  # how this cluster's job processes are found
    conf = home / "slurm.conf"
    conf.write_text(slurm_conf(name, home, host, nodes))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SLURM")}
    env.update(SLURM_CONF=str(conf), TUNE_CILP_PYTHON=sys.executable)
    daemons: list[subprocess.Popen] = []
    cluster = None
    try:
        munge = home / "munge"
        daemons.append(
            start_daemon(
                [PROGRAMS["munged"] or "munged", "--foreground", f"--key-file={key}"]
                + [f"--socket={home}/sock/munge.socket", f"--pid-file={munge}/munged.pid"]
                + [f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"],
                env,
                home / "munged.out",
            )
        )
        ctld = [PROGRAMS["slurmctld"] or "slurmctld", "-D", "-f", str(conf)]
        daemons.append(start_daemon(ctld, env, home / "slurmctld.out"))
        for node in nodes:
            slurmd = [PROGRAMS["slurmd"] or "slurmd", "-D", "-f", str(conf), "-N", node]
            daemons.append(start_daemon(slurmd, env, home / f"slurmd-{node}.out"))
        cluster = Slurm(name, env, home)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(subprocess.CalledProcessError):
                states = cluster.client("sinfo", "--noheader", "--Node", "--format=%T").split()
                if states == ["idle"] * len(nodes):
                    break
            for daemon in daemons:
                assert daemon.poll() is None, daemon.args
            assert time.monotonic() < deadline, (home / "slurmctld.log").read_text()[-3000:]
            time.sleep(0.5)
        yield cluster
    finally:
        stop_daemons(daemons, cluster)
        shutil.rmtree(home, ignore_errors=True)


def run_args(tiny_raw: Path, storage: Path, *extra: str) -> list[str]:
    """The tool's arguments of the tests' runs (run_command's, without `python -m ...`)."""
    return run_command(tiny_raw, storage, *extra)[3:]


def saved_epochs(experiment: Path) -> dict[str, int]:
    """Trial id -> the last epoch in Tune's saved experiment state (what a resume starts from)."""
    (state,) = experiment.glob("experiment_state-*.json")  # one driver session so far
    saved = {}
    for trial_json, meta_json in json.loads(state.read_text())["trial_data"]:
        last = json.loads(meta_json).get("last_result") or {}
        saved[json.loads(trial_json)["trial_id"]] = last.get("training_iteration", 0)
    return saved


def saved_so_far(experiment: Path) -> dict[str, int]:
    """saved_epochs, or nothing while the state is not there yet or being rewritten."""
    try:
        return saved_epochs(experiment)
    except (ValueError, OSError, KeyError):
        return {}


@slurm_test
def test_a_job_runs_the_experiment_to_its_table(
    slurm: Slurm, tiny_raw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "job.out"
    job_id = slurm.submit(out, *run_args(tiny_raw, tmp_path, "--epochs", "1"))
    record = slurm.wait(job_id)
    output = out.read_text()
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), output[-3000:]
    assert record["Requeue"] == "1"  # SLURM may requeue it: a re-run resumes
    assert f"{CPUS} CPUs and 0 GPUs per node, 1 node(s)" in output
    table = output.split("starting trials")[-1]
    assert "concat-maxpool" in table and "concat-stride" in table, output[-3000:]
    experiment = tmp_path / EXPERIMENT
    assert set(trial_statuses(experiment).values()) == {"TERMINATED"}
    analysis = run_analysis(experiment)
    assert analysis.returncode == 0, analysis.stderr
    assert "concat-maxpool" in analysis.stdout and "concat-stride" in analysis.stdout
    slurm.assert_nothing_left(job_id)


@slurm_test
def test_a_cancelled_job_resubmitted_resumes_the_experiment(
    slurm: Slurm, tiny_raw: Path, tmp_path: Path
) -> None:
    epochs = 4
    experiment = tmp_path / EXPERIMENT
    args = run_args(tiny_raw, tmp_path, "--epochs", str(epochs), "--cpus-per-trial", "1")
    # Tune saves its experiment state after every result: the cancel below waits on it.
    env = {**slurm.env, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    first_out = tmp_path / "first.out"
    first = slurm.submit(first_out, *args, env=env)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not any(saved_so_far(experiment).values()):
        assert slurm.job(first)["JobState"] in ("PENDING", "RUNNING"), first_out.read_text()
        assert time.monotonic() < deadline, "no epoch saved"
        time.sleep(0.1)
    slurm.client("scancel", first)
    assert slurm.wait(first)["JobState"] == "CANCELLED"
    slurm.assert_nothing_left(first)
    saved = saved_epochs(experiment)
    assert sorted(saved.values()) != [epochs] * len(saved), saved  # cancelled mid-way
    before = histories(experiment)

    second_out = tmp_path / "second.out"
    second = slurm.submit(second_out, *args, env=env)
    record = slurm.wait(second)
    output = second_out.read_text()
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), output[-3000:]
    assert "resuming experiment" in output
    slurm.assert_nothing_left(second)
    assert set(trial_statuses(experiment).values()) == {"TERMINATED"}
    after = histories(experiment)
    for name, rows in after.items():
        assert [row["epoch"] for row in rows] == list(range(1, epochs + 1)), name
        # The epochs in the saved state stand as the first job reported them (same rows, same
        # times and process): resumed, not trained again.
        kept = saved.get(rows[0]["trial_id"], 0)
        assert rows[:kept] == before[name][:kept], name
    assert sum(saved.values()) >= 1


@slurm_test
def test_bad_inputs_fail_in_one_line(slurm: Slurm, tmp_path: Path) -> None:
    cases = {
        "address": (["--address", "10.0.0.1:6379"], {}, "--address: the job starts its own"),
        "python": ([], {"TUNE_CILP_PYTHON": str(tmp_path / "no-python")}, "TUNE_CILP_PYTHON:"),
    }
    for name, (args, extra_env, message) in cases.items():
        out = tmp_path / f"{name}.out"
        job_id = slurm.submit(out, *args, env={**slurm.env, **extra_env})
        record = slurm.wait(job_id)
        output = out.read_text()
        assert (record["JobState"], record["ExitCode"]) == ("FAILED", "2:0"), output
        assert len(error_lines(output)) == 1 and message in error_lines(output)[0], output
        assert "Traceback" not in output
        assert not slurm.processes(job_id)


@slurm_test
def test_a_job_on_two_nodes_runs_trials_on_both(
    slurm: Slurm, tiny_raw: Path, tmp_path: Path
) -> None:
    # Two SLURM nodes on this one machine: the head in the batch step, the other node's Ray
    # through srun; one CPU per trial, four trials: both nodes' Ray take some.
    out = tmp_path / "job.out"
    args = run_args(tiny_raw, tmp_path, "--epochs", "1", "--seeds", "51,52")
    job_id = slurm.submit(out, *args, "--cpus-per-trial", "1", nodes=NODES)
    record = slurm.wait(job_id)
    output = out.read_text()
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), output[-3000:]
    assert f"{CPUS} CPUs and 0 GPUs per node, {NODES} node(s)" in output
    experiment = tmp_path / EXPERIMENT
    assert list(trial_statuses(experiment).values()) == ["TERMINATED"] * 4
    nodes = {rows[0]["node_id"] for rows in histories(experiment).values()}
    assert len(nodes) == NODES, nodes
    slurm.assert_nothing_left(job_id)


def test_the_documented_submissions_pass_the_runners_checks() -> None:
    """Every `sbatch ... tune_cilp.sbatch ARGS` the docs and the script show: ARGS pass
    `python -m tune_cilp.run`'s parser and its checks that need no Ray (the job hands them on)."""
    found = 0
    for doc in (ROOT / "README.md", ROOT / "docs" / "CLUSTER.md", SBATCH_SCRIPT):
        # Lines continued with a backslash joined; the script's usage is in its comments.
        text = re.sub(r"\\\n[#\s]*", " ", doc.read_text())
        for line in text.splitlines():
            if not line.lstrip("# ").startswith("sbatch "):
                continue
            words = shlex.split(line.lstrip("# "), comments=True)
            argv = words[words.index(str(SBATCH_SCRIPT.relative_to(ROOT))) + 1 :]
            request = parse_request(build_parser().parse_args(argv), argv, started_at=0.0)
            check_applies(request, get_space(request.space))
            assert request.address is None, line  # the job starts its own Ray
            found += 1
    assert found >= 3  # README, CLUSTER.md and the script's header each show one
