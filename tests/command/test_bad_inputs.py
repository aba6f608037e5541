"""The bad-input catalogue across the whole tool, by class: arguments, storage paths, data files,
results, non-regular files, limits, permissions, full disk, wrong-shaped JSON, environment.
Every case, run as a real subprocess, prints exactly one stderr line starting with "error:",
exits with its documented code (2: bad input; 1: a write failed on the storage), and leaves
everything already stored (data, an existing experiment, checkpoints) exactly as it was.

Read-only and full disks are real tmpfs mounts: CI runs as root, where a failed mount fails the
test; without root, a read-only folder is made by its mode and the full-disk cases are left out
(said in the test's output). One-class validation splits: tests/analysis/test_one_class.py."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, MkdirOnLoad, snapshot, tmpfs

pytestmark = pytest.mark.slow  # real Ray runs or subprocesses

RUN = ("-m", "tune_cilp.run")
ANALYSIS = ("-m", "analysis")
DATA = ("-m", "tune_cilp.data")
MARKER = "pickle_payload_ran"
CASE_TIMEOUT_S = 180
ROOT_USER = os.geteuid() == 0
LONG = "n" * 300  # a name longer than any filesystem's 255 bytes


@dataclass(frozen=True)
class Case:
    kind: str  # the class of bad input
    name: str
    args: list[str]
    expected: str  # part of the one error line
    code: int = 2
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset
    database: bool = False  # reaches FiftyOne's database: run alone (one mongod start at a time)


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


def copy_with(experiment: Path, dest: Path, name: str, text: str | None) -> Path:
    """A copy of the experiment whose file `name` (a glob) holds `text`, or is a FIFO (None)."""
    shutil.copytree(experiment, dest)
    (target,) = dest.glob(name)
    target.unlink()
    if text is None:
        os.mkfifo(target)
    else:
        target.write_text(text)
    return dest


def raw_with(raw: Path, dest: Path, replace: str, kind: str) -> Path:
    """A copy of the raw layout with one file replaced by a FIFO, a socket or a device."""
    shutil.copytree(raw, dest)
    target = dest / replace
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(target))  # the socket file stays after close
    else:
        target.symlink_to("/dev/zero")  # a character device that never ends
    return dest


@pytest.fixture(scope="module")
def store(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What the bad inputs must not change: data directories (some with a FIFO, socket or
    device in place of a file), a finished experiment under results/ and damaged copies of it,
    a read-only folder and a full disk."""
    root = tmp_path_factory.mktemp("store")
    # The experiment is made with HOME not writable: Ray's auth token then lives elsewhere.
    home = root / "file.txt"
    home.write_text("a file, not a directory\n")
    run = subprocess.run(
        [
            *(sys.executable, *RUN, "--dataset", str(tiny_raw)),
            *("--storage-path", str(root / "results"), "--epochs", "1", "--wandb", "disabled"),
        ],
        cwd=ROOT,
        env={**os.environ, "HOME": str(home / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"note: {home / 'home' / '.ray'} cannot be written" in run.stderr, run.stderr[-2000:]
    experiment = root / "results" / "seed-ablation"

    shutil.copytree(tiny_raw, root / "raw")
    for name in ("bad_png", "bad_npy", "bad_angles"):
        shutil.copytree(tiny_raw, root / name)
    (root / "bad_png" / "cubes" / "rgb" / "0001.png").write_bytes(b"not a png")
    (root / "bad_npy" / "spheres" / "lidar" / "0002.npy").write_bytes(os.urandom(100))
    np.save(root / "bad_angles" / "cubes" / "azimuth.npy", np.zeros((3, 3)))
    shutil.copytree(tiny_raw, root / "folder_png")
    (root / "folder_png" / "cubes" / "rgb" / "extra").mkdir()
    raw_with(tiny_raw, root / "fifo_png", "cubes/rgb/0001.png", "fifo")
    raw_with(tiny_raw, root / "fifo_npy", "spheres/lidar/0002.npy", "fifo")
    raw_with(tiny_raw, root / "socket_angles", "cubes/azimuth.npy", "socket")
    raw_with(tiny_raw, root / "device_npy", "cubes/lidar/0003.npy", "device")
    os.mkfifo(root / "fifo.csv")
    os.mkfifo(root / "lidar_cnn.pt")

    copy_with_checkpoints(experiment, root / "garbage_ckpt" / "seed-ablation", b"\0" * 64)
    payload = root / "payload.pt"
    torch.save({"config": {}, "model": MkdirOnLoad(root / MARKER)}, payload)
    copy_with_checkpoints(experiment, root / "payload_ckpt" / "seed-ablation", payload.read_bytes())
    meta = json.loads((experiment / "tune_cilp.json").read_text())
    copy_with(experiment, root / "list_meta" / "seed-ablation", "tune_cilp.json", "[]")
    typed = json.dumps({**meta, "epochs": "1"})
    copy_with(experiment, root / "typed_meta" / "seed-ablation", "tune_cilp.json", typed)
    copy_with(experiment, root / "fifo_meta" / "seed-ablation", "tune_cilp.json", None)
    state = '{"trial_data": [1, 2]}'
    copy_with(experiment, root / "state_shape" / "seed-ablation", "experiment_state-*", state)

    with contextlib.ExitStack() as mounts:
        if ROOT_USER:
            mounts.enter_context(tmpfs(root / "read_only", "1m", read_only=True))
            full = mounts.enter_context(tmpfs(root / "full", "1m"))
            with open(full / "filler", "wb") as f, pytest.raises(OSError):
                while True:  # to the last byte
                    f.write(b"\0" * 65536)
                    f.flush()
        else:
            (root / "read_only").mkdir(mode=0o555)
        yield root


def catalogue(store: Path) -> list[Case]:
    results = ["--storage-path", str(store / "results")]  # holds a finished experiment
    raw = ["--dataset", str(store / "raw")]
    experiment = str(store / "results" / "seed-ablation")
    review = ["--to-fiftyone", "--fiftyone-dataset", "review"]
    file_txt = store / "file.txt"
    media = str(file_txt)
    cases = [
        # arguments and search-space values (more of these, in process, in test_run.py)
        Case("arguments", "seeds not integers", [*RUN, *results, "--seeds", "1,x"], "--seeds: ex"),
        Case(
            "arguments",
            "negative seed",
            [*RUN, *results, "--seeds", "-1"],
            "seed: expected an integer in [0, 2**63)",
        ),
        Case(
            "arguments",
            "seeds for a sampled space",
            [*RUN, *results, "--space", "hpo", "--seeds", "1,2"],
            "--seeds: space 'hpo' samples",
        ),
        Case("arguments", "negative retries", [*RUN, *results, "--max-failures", "-5"], "must"),
        Case(
            "arguments",
            "experiment name escaping storage",
            [*RUN, *results, "--name", "../escape"],
            "--name: must be a plain directory name",
        ),
        Case("arguments", "unknown option", [*RUN, *results, "--bogus"], "unrecognized arguments"),
        Case("arguments", "empty name", [*RUN, *results, "--name", ""], "--name: must be a plain"),
        Case(
            "arguments",
            "endless epochs",
            [*RUN, *results, "--epochs", "100000000000000000000"],
            "--epochs: must be between 1 and 10,000",
        ),
        Case("arguments", "unknown set", [*RUN, *results, "--dataset", "synthetic:x"], "unknown"),
        Case("arguments", "top-k alone", [*RUN, *results, "--top-k", "2"], "--top-k: only with"),
        Case(
            "arguments",
            "replicate a data folder",
            [*RUN, *results, "--replicate", str(store / "raw"), "--seeds", "1,2"],
            "not a Ray Tune experiment",
        ),
        Case(
            "arguments",
            "rerun with other epochs",
            [*RUN, *results, *raw, "--epochs", "3"],
            "--epochs: this experiment was made with 1, not 3",
        ),
        Case(
            "arguments",
            "unreachable cluster",
            [*RUN, *results, "--address", f"127.0.0.1:{closed_port()}"],
            "--address: cannot reach a Ray cluster",
        ),
        Case(
            "arguments",
            "unknown table format",
            [*ANALYSIS, experiment, "--format", "nope"],
            "--format 'nope': unknown table format",
        ),
        Case(
            "arguments",
            "bad split fractions",
            [*DATA, "ingest", str(store / "raw"), "--name", "x", "--split", "train=2"],
            "split fractions",
        ),
        # storage paths
        Case(
            "storage paths",
            "storage path under a file",
            [*RUN, "--storage-path", str(file_txt / "sub")],
            f"--storage-path: {file_txt} is not a folder",
        ),
        Case(
            "storage paths",
            "storage path that is a file",
            [*RUN, "--storage-path", str(file_txt)],
            f"--storage-path: {file_txt} is not a folder",
        ),
        Case(
            "storage paths",
            "storage URI with an unknown scheme",
            [*RUN, "--storage-path", "foo://bucket/results"],
            "unsupported URI scheme 'foo'",
        ),
        Case("storage paths", "malformed URI", [*RUN, "--storage-path", "s3:/b"], "malformed URI"),
        Case(
            "storage paths",
            "generate over existing data",
            [*DATA, "generate", "--out", str(store / "raw"), "--scenes", "4"],
            "exists and is not an empty directory",
        ),
        Case(
            "storage paths",
            "media directory under a file",
            [*DATA, "ingest", str(store / "raw"), "--name", "zz_media", "--data-dir", media],
            f"{file_txt / 'fiftyone' / 'zz_media'}: cannot write lidar media (Not a",
            database=True,
        ),
        Case(
            "storage paths",
            "csv into a missing folder",
            [*ANALYSIS, experiment, "--csv", str(store / "missing" / "t.csv")],
            "does not exist",
        ),
        # data files and dataset names
        Case("data files", "missing data", [*RUN, *results, "--dataset", "/nonexist"], "no such"),
        Case(
            "data files",
            "unknown FiftyOne dataset",
            [*RUN, *results, "--dataset", "no_such_dataset_zz"],
            "no_such_dataset_zz: no such directory and no FiftyOne dataset",
            database=True,
        ),
        Case(
            "data files",
            "corrupt PNG",
            [*RUN, *results, "--dataset", str(store / "bad_png")],
            "0001.png: corrupt or unreadable PNG",
        ),
        Case(
            "data files",
            "lidar .npy that is not one",
            [*RUN, *results, "--dataset", str(store / "bad_npy")],
            "0002.npy: not a readable .npy file",
        ),
        Case(
            "data files",
            "angles of the wrong shape",
            [*RUN, *results, "--dataset", str(store / "bad_angles")],
            "azimuth.npy: expected float angles of shape (64,)",
        ),
        Case("data files", "inspect a file", [*DATA, "inspect", str(file_txt)], "not a directory"),
        Case(
            "data files",
            "folder in place of a PNG",
            [*DATA, "inspect", str(store / "folder_png")],
            f"{store / 'folder_png' / 'cubes' / 'rgb' / 'extra'}: unexpected folder (expected NN",
        ),
        # results directories and checkpoints
        Case("results", "not an experiment", [*ANALYSIS, str(store / "raw")], "not a Ray Tune"),
        Case("results", "missing experiment", [*ANALYSIS, str(store / "gone")], "no such dir"),
        Case(
            "results",
            "checkpoint that is not a checkpoint",
            [*ANALYSIS, str(store / "garbage_ckpt" / "seed-ablation"), *review],
            "state.pt: not a loadable checkpoint",
            database=True,
        ),
        Case(
            "results",
            "checkpoint carrying a pickle payload",
            [*ANALYSIS, str(store / "payload_ckpt" / "seed-ablation"), *review],
            "state.pt: not a loadable checkpoint",
            database=True,
        ),
        # non-regular files: refused before anything opens them (a FIFO would block forever)
        Case(
            "non-regular files",
            "FIFO in place of a PNG",
            [*RUN, *results, "--dataset", str(store / "fifo_png")],
            "0001.png: a named pipe (FIFO), but a PNG image is expected here",
        ),
        Case(
            "non-regular files",
            "FIFO in place of a lidar file",
            [*DATA, "inspect", str(store / "fifo_npy")],
            "0002.npy: a named pipe (FIFO), but a .npy file is expected here",
        ),
        Case(
            "non-regular files",
            "socket in place of the angles",
            [*RUN, *results, "--dataset", str(store / "socket_angles")],
            "azimuth.npy: a socket, but a .npy file is expected here",
        ),
        Case(
            "non-regular files",
            "device in place of a lidar file",
            [*RUN, *results, "--dataset", str(store / "device_npy")],
            "0003.npy: a character device, but a .npy file is expected here",
        ),
        Case(
            "non-regular files",
            "FIFO in place of the experiment's metadata",
            [*ANALYSIS, str(store / "fifo_meta" / "seed-ablation")],
            "named pipe (FIFO), not a regular file",
        ),
        Case(
            "non-regular files",
            "FIFO in place of the --lidar-cnn file",
            [*RUN, *results, "--space", "cilp", "--lidar-cnn", str(store / "lidar_cnn.pt")],
            "lidar_cnn.pt: a named pipe (FIFO)",
        ),
        Case(
            "non-regular files",
            "csv onto a FIFO",
            [*ANALYSIS, experiment, "--csv", str(store / "fifo.csv")],
            "is a named pipe (FIFO); a file cannot be written there",
        ),
        # limits of the filesystem, checked before Ray or pyarrow see the path
        Case("limits", "name too long", [*RUN, *results, "--name", LONG], "is 300 bytes"),
        Case(
            "limits",
            "path too long",
            [*RUN, "--storage-path", str(store / "/".join(["d" * 250] * 16))],
            "the filesystem allows 4096",
        ),
        Case(
            "limits",
            "csv file name too long",
            [*ANALYSIS, experiment, "--csv", str(store / f"{LONG}.csv")],
            "--csv: the name nnn",
        ),
        Case(
            "limits",
            "plots folder name too long",
            [*ANALYSIS, experiment, "--plots", str(store / LONG)],
            "--plots: the name nnn",
        ),
        Case(
            "limits",
            "Ray temp dir too long for its sockets",
            [*RUN, *results, *raw, "--name", "socket"],
            "too long for Ray's sockets",
            env={"RAY_TMPDIR": str(store / ("t" * 90))},
        ),
        # permissions: a folder that cannot be written
        Case(
            "permissions",
            "storage on a read-only folder",
            [*RUN, *raw, "--storage-path", str(store / "read_only" / "results")],
            "is not writable",
        ),
        Case(
            "permissions",
            "csv into a read-only folder",
            [*ANALYSIS, experiment, "--csv", str(store / "read_only" / "t.csv")],
            "is not writable",
        ),
        Case(
            "permissions",
            "plots into a read-only folder",
            [*ANALYSIS, experiment, "--plots", str(store / "read_only" / "plots")],
            "is not writable",
        ),
        Case(
            "permissions",
            "generate into a read-only folder",
            [*DATA, "generate", "--out", str(store / "read_only" / "gen"), "--scenes", "4"],
            "is not writable",
        ),
        # wrong-shaped JSON: valid JSON that is not what the reader expects
        Case(
            "wrong-shaped JSON",
            "metadata that is a list (analysis)",
            [*ANALYSIS, str(store / "list_meta" / "seed-ablation")],
            "expected a JSON object, got list",
        ),
        Case(
            "wrong-shaped JSON",
            "metadata that is a list (re-run)",
            [*RUN, *raw, "--storage-path", str(store / "list_meta"), "--epochs", "1"],
            "expected a JSON object, got list",
        ),
        Case(
            "wrong-shaped JSON",
            "metadata field of the wrong type",
            [*ANALYSIS, str(store / "typed_meta" / "seed-ablation")],
            "'epochs' is \"1\", expected int",
        ),
        Case(
            "wrong-shaped JSON",
            "experiment state of the wrong shape",
            [*ANALYSIS, str(store / "state_shape" / "seed-ablation")],
            "cannot read experiment state",
        ),
        # environment: the places Ray writes
        Case(
            "environment",
            "RAY_TMPDIR under a file",
            [*RUN, *results, *raw, "--name", "tmp1"],
            f"Ray's temp dir (RAY_TMPDIR={file_txt / 'x'})",
            env={"RAY_TMPDIR": str(file_txt / "x")},
        ),
        Case(
            "environment",
            "TMPDIR under a file",
            [*RUN, *results, *raw, "--name", "tmp2"],
            f"Ray's temp dir (TMPDIR={file_txt / 'x'})",
            env={"RAY_TMPDIR": None, "TMPDIR": str(file_txt / "x")},
        ),
    ]
    if ROOT_USER:  # a full disk needs a mount
        full = store / "full"
        cases += [
            Case("full disk", "storage", [*RUN, *raw, "--storage-path", str(full)], "full", 1),
            Case("full disk", "plots", [*ANALYSIS, experiment, "--plots", str(full / "p")], "", 1),
            Case("full disk", "csv", [*ANALYSIS, experiment, "--csv", str(full / "t.csv")], "", 1),
            Case("full disk", "json", [*ANALYSIS, experiment, "--json", str(full / "t.js")], "", 1),
            Case(
                "full disk",
                "generate",
                [*DATA, "generate", "--out", str(full / "gen"), "--scenes", "4"],
                "",
                1,
            ),
        ]
    return cases


def run_case(case: Case) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    for key, value in case.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, *case.args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT_S,
    )


def test_every_bad_input_is_one_line_with_its_exit_code_and_changes_nothing(store: Path) -> None:
    cases = catalogue(store)
    kinds = {case.kind for case in cases}
    expected_kinds = {
        "arguments",
        "storage paths",
        "data files",
        "results",
        "non-regular files",
        "limits",
        "permissions",
        "wrong-shaped JSON",
        "environment",
    } | ({"full disk"} if ROOT_USER else set())
    assert kinds == expected_kinds
    for kind in kinds:  # more than one member of each class
        assert sum(case.kind == kind for case in cases) >= 2, kind
    if not ROOT_USER:
        print("not root: the full-disk cases need a tmpfs mount and are left out")
    before = snapshot(store, exact=True)
    # The cases that reach FiftyOne's database run one at a time after the others: processes
    # racing to start one mongod can time out on a loaded machine.
    procs: dict[int, subprocess.CompletedProcess] = {}
    parallel = [i for i, case in enumerate(cases) if not case.database]
    with ThreadPoolExecutor(max_workers=4) as pool:  # mostly waiting on imports
        for i, proc in zip(parallel, pool.map(run_case, [cases[i] for i in parallel]), strict=True):
            procs[i] = proc
    for i, case in enumerate(cases):
        if case.database:
            procs[i] = run_case(case)
    after = snapshot(store, exact=True)

    wrong = []
    for i, case in enumerate(cases):
        proc = procs[i]
        lines = proc.stderr.splitlines()
        one_line = len(lines) == 1 and lines[0].startswith("error: ")
        if proc.returncode != case.code or not one_line or case.expected not in proc.stderr:
            wrong.append(
                f"{case.kind} / {case.name}: exit {proc.returncode} (expected {case.code}), "
                f"stderr {proc.stderr[-600:]!r}"
            )
    assert not wrong, "\n".join(wrong)
    assert not (store / MARKER).exists()  # the payload never ran
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, changed


def test_analysis_plots_with_home_not_writable_print_no_warning(store: Path) -> None:
    """matplotlib's config folder under an unwritable HOME: a private one, no warning lines."""
    home = store / "file.txt" / "home"
    plots = store.parent / f"{store.name}-plots"
    case = Case(
        "environment",
        "HOME not writable",
        [*ANALYSIS, str(store / "results" / "seed-ablation"), "--plots", str(plots)],
        "",
        code=0,
        env={"HOME": str(home), "MPLCONFIGDIR": None},
    )
    proc = run_case(case)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    assert sorted(p.name for p in plots.iterdir()) == sorted(
        line.rpartition("/")[2] for line in proc.stdout.splitlines() if line.startswith("wrote ")
    )
