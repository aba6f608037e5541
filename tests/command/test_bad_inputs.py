"""The bad-input catalogue across the whole tool: every case, run as a real subprocess, prints
exactly one stderr line starting with "error:", exits with code 2, and leaves everything
already stored (data, an existing experiment, checkpoints) exactly as it was."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, MkdirOnLoad, snapshot

pytestmark = pytest.mark.slow  # real Ray runs or subprocesses

RUN = ("-m", "tune_cilp.run")
ANALYSIS = ("-m", "analysis")
DATA = ("-m", "tune_cilp.data")
MARKER = "pickle_payload_ran"
CASE_TIMEOUT_S = 180
NEEDS_DATABASE = {"unknown FiftyOne dataset", "media directory under a file"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def copy_with_checkpoints(experiment: Path, dest: Path, content: bytes) -> Path:
    """A copy of the experiment whose every checkpoint file holds `content`."""
    shutil.copytree(experiment, dest)
    states = list(dest.glob("*/checkpoint_*/state.pt"))
    assert states
    for state in states:
        state.write_bytes(content)
    return dest


@pytest.fixture(scope="module")
def store(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the bad inputs must not change: data directories, a finished experiment under
    results/, and copies of it whose checkpoints are garbage or carry a pickle payload."""
    root = tmp_path_factory.mktemp("store")
    cmd = [
        sys.executable,
        *RUN,
        "--dataset",
        str(tiny_raw),
        "--storage-path",
        str(root / "results"),
    ]
    run = subprocess.run(
        [*cmd, "--epochs", "1", "--wandb", "disabled"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    experiment = root / "results" / "seed-ablation"

    shutil.copytree(tiny_raw, root / "raw")
    for name in ("bad_png", "bad_npy", "bad_angles"):
        shutil.copytree(tiny_raw, root / name)
    (root / "bad_png" / "cubes" / "rgb" / "0001.png").write_bytes(b"not a png")
    (root / "bad_npy" / "spheres" / "lidar" / "0002.npy").write_bytes(os.urandom(100))
    np.save(root / "bad_angles" / "cubes" / "azimuth.npy", np.zeros((3, 3)))
    (root / "file.txt").write_text("a file, not a directory\n")
    shutil.copytree(tiny_raw, root / "folder_png")
    (root / "folder_png" / "cubes" / "rgb" / "extra").mkdir()

    copy_with_checkpoints(experiment, root / "garbage_ckpt" / "seed-ablation", b"\0" * 64)
    payload = root / "payload.pt"
    torch.save({"config": {}, "model": MkdirOnLoad(root / MARKER)}, payload)
    copy_with_checkpoints(experiment, root / "payload_ckpt" / "seed-ablation", payload.read_bytes())
    return root


def catalogue(store: Path) -> list[tuple[str, list[str], str]]:
    """(case, command arguments, expected part of the error line)."""
    results = ["--storage-path", str(store / "results")]  # holds a finished experiment
    experiment = str(store / "results" / "seed-ablation")
    review = ["--to-fiftyone", "--fiftyone-dataset", "review"]
    return [
        # python -m tune_cilp.run: arguments and search-space values (more of these, in process,
        # in test_run.py)
        ("seeds not integers", [*RUN, *results, "--seeds", "1,x"], "--seeds: expected"),
        (
            "negative seed",
            [*RUN, *results, "--seeds", "-1"],
            "seed: expected an integer in [0, 2**63)",
        ),
        (
            "seeds for a sampled space",
            [*RUN, *results, "--space", "hpo", "--seeds", "1,2"],
            "--seeds: space 'hpo' samples",
        ),
        ("negative retries", [*RUN, *results, "--max-failures", "-5"], "--max-failures: must"),
        (
            "experiment name escaping storage",
            [*RUN, *results, "--name", "../escape"],
            "--name: must be a plain directory name",
        ),
        ("unknown option", [*RUN, *results, "--bogus"], "unrecognized arguments: --bogus"),
        ("empty experiment name", [*RUN, *results, "--name", ""], "--name: must be a plain"),
        (
            "endless epochs",
            [*RUN, *results, "--epochs", "100000000000000000000"],
            "--epochs: must be between 1 and 10,000",
        ),
        ("unknown synthetic set", [*RUN, *results, "--dataset", "synthetic:x"], "unknown synth"),
        ("top-k alone", [*RUN, *results, "--top-k", "2"], "--top-k: only with --replicate"),
        (
            "replicate a data folder",
            [*RUN, *results, "--replicate", str(store / "raw"), "--seeds", "1,2"],
            "not a Ray Tune experiment",
        ),
        (
            "rerun with other epochs",
            [*RUN, *results, "--dataset", str(store / "raw"), "--epochs", "3"],
            "--epochs: this experiment was made with 1, not 3",
        ),
        (
            "unreachable cluster",
            [*RUN, *results, "--address", f"127.0.0.1:{closed_port()}"],
            "--address: cannot reach a Ray cluster",
        ),
        # storage paths
        (
            "storage path under a file",
            [*RUN, "--storage-path", str(store / "file.txt" / "sub")],
            f"--storage-path: {store / 'file.txt'} is a file, not a directory",
        ),
        (
            "storage path that is a file",
            [*RUN, "--storage-path", str(store / "file.txt")],
            f"--storage-path: {store / 'file.txt'} is a file, not a directory",
        ),
        (
            "storage URI with an unknown scheme",
            [*RUN, "--storage-path", "foo://bucket/results"],
            "unsupported URI scheme 'foo'",
        ),
        ("malformed storage URI", [*RUN, "--storage-path", "s3:/bucket"], "malformed URI"),
        # data files and dataset names
        (
            "missing data directory",
            [*RUN, *results, "--dataset", str(store / "missing")],
            "missing",
        ),
        (
            "unknown FiftyOne dataset",
            [*RUN, *results, "--dataset", "no_such_dataset_zz"],
            "no_such_dataset_zz: no such directory and no FiftyOne dataset",
        ),
        (
            "corrupt PNG",
            [*RUN, *results, "--dataset", str(store / "bad_png")],
            "0001.png: corrupt or unreadable PNG",
        ),
        (
            "lidar .npy that is not one",
            [*RUN, *results, "--dataset", str(store / "bad_npy")],
            "0002.npy: not a readable .npy file",
        ),
        (
            "angles of the wrong shape",
            [*RUN, *results, "--dataset", str(store / "bad_angles")],
            "azimuth.npy: expected float angles of shape (64,)",
        ),
        (
            "generate over existing data",
            [*DATA, "generate", "--out", str(store / "raw"), "--scenes", "4"],
            "exists and is not an empty directory",
        ),
        (
            "bad split fractions",
            [*DATA, "ingest", str(store / "raw"), "--name", "x", "--split", "train=2"],
            "split fractions",
        ),
        ("inspect a file", [*DATA, "inspect", str(store / "file.txt")], "not a directory"),
        (
            "folder in place of a PNG",
            [*DATA, "inspect", str(store / "folder_png")],
            f"{store / 'folder_png' / 'cubes' / 'rgb' / 'extra'}: unexpected folder (expected NNNN",
        ),
        (
            "media directory under a file",
            [
                *DATA,
                "ingest",
                str(store / "raw"),
                "--name",
                "zz_media",
                "--data-dir",
                str(store / "file.txt"),
            ],
            f"{store / 'file.txt' / 'fiftyone' / 'zz_media'}: cannot write lidar media (Not a",
        ),
        # python -m analysis: results directories and checkpoints
        (
            "results directory that is not an experiment",
            [*ANALYSIS, str(store / "raw")],
            "not a Ray Tune experiment",
        ),
        ("missing experiment", [*ANALYSIS, str(store / "missing")], "no such directory"),
        (
            "unknown table format",
            [*ANALYSIS, experiment, "--format", "nope"],
            "--format 'nope': unknown table format",
        ),
        (
            "checkpoint that is not a checkpoint",
            [*ANALYSIS, str(store / "garbage_ckpt" / "seed-ablation"), *review],
            "state.pt: not a loadable checkpoint",
        ),
        (
            "checkpoint carrying a pickle payload",
            [*ANALYSIS, str(store / "payload_ckpt" / "seed-ablation"), *review],
            "state.pt: not a loadable checkpoint",
        ),
    ]


def run_case(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT_S,
    )


def test_every_bad_input_is_one_line_exit_2_and_changes_nothing(store: Path) -> None:
    cases = catalogue(store)
    assert len(cases) >= 15
    before = snapshot(store, exact=True)
    # The cases that reach FiftyOne's database run one at a time after the others: processes
    # racing to start one mongod can time out on a loaded machine.
    parallel = [i for i, (case, _, _) in enumerate(cases) if case not in NEEDS_DATABASE]
    procs: list[subprocess.CompletedProcess | None] = [None] * len(cases)
    with ThreadPoolExecutor(max_workers=4) as pool:  # mostly waiting on imports
        jobs = pool.map(run_case, [cases[i][1] for i in parallel])
        for i, proc in zip(parallel, jobs, strict=True):
            procs[i] = proc
    for i, (case, args, _) in enumerate(cases):
        if case in NEEDS_DATABASE:
            procs[i] = run_case(args)
    after = snapshot(store, exact=True)

    wrong = []
    for (case, _, expected), proc in zip(cases, procs, strict=True):
        lines = proc.stderr.splitlines()
        one_line = len(lines) == 1 and lines[0].startswith("error: ")
        if proc.returncode != 2 or not one_line or expected not in proc.stderr:
            wrong.append(f"{case}: exit {proc.returncode}, stderr {proc.stderr[-600:]!r}")
    assert not wrong, "\n".join(wrong)
    assert not (store / MARKER).exists()  # the payload never ran
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, changed
