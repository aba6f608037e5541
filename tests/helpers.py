"""Helpers the tests share: subprocess runs of the command and Ray environments, reading an
experiment directory as raw files, pickle payloads for the safe-loading tests, tiny raw layouts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow.fs
import pytest
from PIL import Image

from tune_cilp.experiment.identity import ExperimentMeta
from tune_cilp.experiment.lock import LOCK_FILE

# --- What the tests share: the repository root, runner subprocesses (a private Ray temp dir per

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300


def snapshot(root: Path, *, exact: bool = False) -> dict[str, tuple]:
    """Every file under root by size and SHA-256, the driver's lock file aside (each driver
    writes its pid there); `exact` adds each file's mtime and every directory (then nothing
    was even rewritten or created). A FIFO, socket or device is recorded by its kind and mode,
    never read (a FIFO would block)."""
    state: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        if path.name == LOCK_FILE:
            continue
        rel = str(path.relative_to(root))
        if path.is_dir():
            if exact:
                state[rel] = ("dir",)
            continue
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            state[rel] = ("special", info.st_mode, info.st_mtime_ns if exact else 0)
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        state[rel] = (info.st_size, info.st_mtime_ns, digest) if exact else (info.st_size, digest)
    return state


def mount(*args: str) -> None:
    """`mount ARGS`. Skipped where the tests do not run as root; as root (CI) a mount that
    fails fails the test, so a case that stopped running never looks like one that passed."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root to mount ({shlex.join(args)}): this case is not run")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"mount {shlex.join(args)} failed as root: {done.stderr}"


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `path` (created) for the block, then unmounted (see
    mount: root only)."""
    path.mkdir()
    mount("-t", "tmpfs", "-o", f"size={size}" + (",ro" if read_only else ""), "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def saved_environ() -> Iterator[None]:
    """os.environ as it was, back after the block (the runner sets W&B and Ray variables)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def error_lines(text: str) -> list[str]:
    """The `error:` lines of a command's output."""
    return [line for line in text.splitlines() if line.startswith("error:")]


def run_command(dataset: Path, storage: Path | str, *extra: str) -> list[str]:
    """`python -m tune_cilp.run` on `dataset` into `storage` (a directory or a URI), W&B off."""
    return [
        *(sys.executable, "-m", "tune_cilp.run", "--dataset", str(dataset)),
        *("--storage-path", str(storage), "--wandb", "disabled", *extra),
    ]


def run_analysis(experiment: str | Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m analysis EXPERIMENT ARGS` from the repository root, output captured."""
    cmd = [sys.executable, "-m", "analysis", str(experiment), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


class RayEnv:
    """Environment for runner subprocesses with a private Ray temp dir, so every Ray process a
    run starts can be found (by that dir in its command line) and stopped afterwards."""

    def __init__(self, **extra: str) -> None:
        # Short path: Ray's unix sockets live under it (107-byte limit).
        self.tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(RAY_TMPDIR=self.tmp, **extra)

    def leftovers(self) -> list[psutil.Process]:
        """The processes of the runs' Rays (and the drivers' watchdogs): the temp dir in their
        command line (GCS, raylet, Ray's Python daemons) or, where Ray rewrote the command line
        (ray:: workers, agents), in their environment or in a file they hold open (their logs)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(self.tmp in arg for arg in proc.info["cmdline"] or ()) or self._uses(proc):
                    found.append(proc)
        return found

    def _uses(self, proc: psutil.Process) -> bool:
        if proc.environ().get("RAY_TMPDIR") == self.tmp:
            return True
        return any(f.path.startswith(self.tmp + os.sep) for f in proc.open_files())

    def close(self) -> None:
        for proc in self.leftovers():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


S3_BUCKET = "tune-cilp-tests"


def s3_filesystem(env: dict[str, str], **options: Any) -> pyarrow.fs.S3FileSystem:
    """A pyarrow S3 file system on the server `env` names (s3_server's variables), for the
    tests' own reads: S3FileSystem() itself ignores AWS_ENDPOINT_URL (apache/arrow#49643)."""
    return pyarrow.fs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_DEFAULT_REGION"],
        endpoint_override=env["AWS_ENDPOINT_URL"],
        **options,
    )


@contextlib.contextmanager
def s3_server(log: Path) -> Iterator[dict[str, str]]:
    """A local S3-compatible server (moto's server mode, its own process, on 127.0.0.1) holding
    an empty bucket S3_BUCKET: yields the AWS_* variables that point pyarrow (so Ray Tune, its
    trial workers, the tool and the analysis) at it, the way a MinIO endpoint is configured."""
    with socket.socket() as probe:  # a free port; moto's server cannot report one it chose
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"moto's server exited: {log.read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto's server did not start in 30 s"
                time.sleep(0.05)
        env = {
            "AWS_ENDPOINT_URL": endpoint,  # pyarrow >= 15 reads it in FileSystem.from_uri
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups off EC2
        }
        s3_filesystem(env, allow_bucket_creation=True).create_dir(S3_BUCKET)
        yield env
    finally:
        server.kill()
        server.wait()


def start(cmd: list[str], env: RayEnv, log: Path) -> subprocess.Popen:
    """Start `cmd` in its own session, stdout and stderr into `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def finish(proc: subprocess.Popen, log: Path, timeout: float = RUN_TIMEOUT_S) -> str:
    """Wait for `proc` (killing its process group on timeout); the log's text."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return log.read_text()


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = RUN_TIMEOUT_S):
    """Poll `condition()` until it is truthy (its value); fail if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def execute_notebook(experiment: Path) -> tuple[str, int]:
    """Run notebooks/analysis.ipynb on `experiment`: its printed text and how many images."""
    import nbformat
    from nbclient import NotebookClient

    with saved_environ():
        os.environ["TUNE_CILP_EXPERIMENT"] = str(experiment)
        nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
        # jupyter_client runs kernel argv "python" as sys.executable: this venv's interpreter.
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
        ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    return text, sum("image/png" in o.get("data", {}) for o in outputs)


# --- Read a Ray Tune experiment directory the way the tests check it: raw files, no Ray.


def read_rows(path: Path) -> list[dict[str, Any]]:
    """result.json rows (one JSON object per line); a last line still being written is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def histories(experiment: Path) -> dict[str, list[dict[str, Any]]]:
    """Trial directory name -> every row the trial reported, in order."""
    return {p.parent.name: read_rows(p) for p in sorted(experiment.glob("*/result.json"))}


def trial_statuses(experiment: Path) -> dict[str, str]:
    """Trial id -> status in the latest experiment state Tune has synced to storage."""
    states = sorted(experiment.glob("experiment_state-*.json"))  # one per session, timestamped
    try:
        state = json.loads(states[-1].read_text())
    except (IndexError, OSError, json.JSONDecodeError):  # not there yet, or being rewritten
        return {}
    trials = (json.loads(trial_json) for trial_json, _ in state["trial_data"])
    return {trial["trial_id"]: trial["status"] for trial in trials}


# --- Pickle payloads for the safe-loading tests: what a malicious checkpoint or experiment folder


class MkdirOnLoad:
    """Pickles to a call of os.mkdir: loading it unsafely would create a directory."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


TRIAL_PICKLES = ("params.pkl", "error.pkl")  # Tune writes error.pkl only for a failed trial


def blob(marker: Path) -> dict[str, str]:
    """Tune's JSON marker of a cloudpickled value, carrying a payload that creates `marker`."""
    from ray import cloudpickle

    return {"_type": "CLOUDPICKLE_FALLBACK", "value": cloudpickle.dumps(MkdirOnLoad(marker)).hex()}


def plant(experiment: Path, marker: Path) -> int:
    """Plant payloads that create `marker` when loaded unsafely into every Tune experiment folder
    under `experiment` (a CILP experiment has one per stage): a blob in each state file's runner
    data and in every trial's storage field and last result, and pickle files in place of
    tuner.pkl, params.pkl and error.pkl. Returns how many files were planted."""
    import pickle

    planted = 0
    payload = pickle.dumps(MkdirOnLoad(marker))
    for state_file in sorted(experiment.rglob("experiment_state-*.json")):
        state = json.loads(state_file.read_text())
        state["runner_data"] = blob(marker)
        trials = []
        for trial_json, meta_json in state["trial_data"]:
            trial, meta = json.loads(trial_json), json.loads(meta_json)
            trial["storage"] = blob(marker)
            meta["last_result"]["planted"] = blob(marker)
            trials.append([json.dumps(trial), json.dumps(meta)])
        state["trial_data"] = trials
        state_file.write_text(json.dumps(state))
        planted += 1
        folder = state_file.parent
        trial_dirs = [d for d in folder.iterdir() if (d / "params.json").is_file()]
        targets = [folder / "tuner.pkl", *(d / n for d in trial_dirs for n in TRIAL_PICKLES)]
        for path in targets:
            path.write_bytes(payload)
        planted += len(targets)
    return planted


# --- Tiny hand-made raw layouts (random PNGs and depth maps) for the data-layer tests.

ANGLES = np.deg2rad(np.arange(-16, 16, 0.5)).astype(np.float32)


def make_raw(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """Write a valid raw layout with per_class random scenes in cubes/ and spheres/."""
    rng = np.random.default_rng(seed)
    for label in ("cubes", "spheres"):
        (root / label / "rgb").mkdir(parents=True)
        (root / label / "lidar").mkdir()
        np.save(root / label / "azimuth.npy", ANGLES)
        np.save(root / label / "zenith.npy", ANGLES)
        for i in range(per_class):
            rgba = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
            rgba[..., 3] = 255
            Image.fromarray(rgba).save(root / label / "rgb" / f"{i:04d}.png")
            depth = np.full((64, 64), 50.0, np.float32)
            depth[20:40, 20:40] = rng.uniform(18, 29, (20, 20))
            np.save(root / label / "lidar" / f"{i:04d}.npy", depth)
    return root


def run_data_cli(*args: str | Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m tune_cilp.data ARGS` from the repository root, with this environment."""
    return subprocess.run(
        [sys.executable, "-m", "tune_cilp.data", *map(str, args)],
        cwd=ROOT,
        env=os.environ.copy(),  # conftest's private FiftyOne database and data directory
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# An experiment's identity; tests/experiment/test_experiment_meta.py says what each field means.
BASE = ExperimentMeta(
    space="seed-ablation",
    dataset="synthetic:seed",
    data_fingerprint="a" * 32,
    data_dir="/data",
    smoke_test=False,
    epochs=50,
    seeds=None,
    num_samples=1,
    precision=None,
    cpus_per_trial=1.0,
    gpus_per_trial=None,
)


def plugin_env(tmp_path: Path, module: str, where: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` with a sitecustomize on PYTHONPATH that calls `module`.register() (found in
    `where`) as every Python process starts: how a subprocess run, its Ray workers and its
    analysis get a scratch registry entry the way they would import an edited file."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import {module}\n\n{module}.register()\n")
    path = [str(site), str(where), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


# --- Trials with per-scene scores, as the analysis reads them (tests/analysis) ------------------

SCENE_LABELS = np.array([0] * 30 + [1] * 5)
SCENE_IDS = np.array([f"cubes/{i:04d}" for i in range(30)] + [f"spheres/{i:04d}" for i in range(5)])


def scene_trial(
    tmp: Path,
    variant: str,
    seed: int,
    proba: np.ndarray,
    ids: np.ndarray = SCENE_IDS,
    reported: dict[str, float] | None = None,
    **config: Any,
):
    """A TrialResult whose real checkpoint folder holds its predictions.json (the best and the
    last epoch's scores `proba` on SCENE_LABELS); its one result row has the loss and accuracy
    of `proba` and fixed other numbers, updated with `reported`."""
    from ray.tune import Checkpoint
    from sklearn.metrics import accuracy_score, log_loss

    from analysis.stats import summarize_trial
    from tune_cilp.core.predictions import Predictions, Scores, write_predictions

    folder = tmp / f"{variant}-{seed}-{len(list(tmp.iterdir()))}"
    folder.mkdir()
    record = Predictions(ids, SCENE_LABELS, Scores(1, proba), Scores(1, proba))
    write_predictions(folder, record)
    row = {
        "epoch": 1,
        "val_loss": log_loss(SCENE_LABELS, proba),
        "val_accuracy": accuracy_score(SCENE_LABELS, proba >= 0.5),
        "val_balanced_accuracy": 0.5,
        "val_f1": 0.0,
        "val_majority_rate": 30 / 35,
        "epoch_time_s": 2.0,
        "num_parameters": 1000,
        **(reported or {}),
    }
    cfg = {"variant": variant, "downsample": "maxpool", "seed": seed, **config}
    return summarize_trial(f"{variant}_{seed}", cfg, [row], checkpoint=Checkpoint(str(folder)))
