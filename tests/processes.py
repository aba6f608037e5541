"""What the tests share: the repository root, runner subprocesses (a private Ray temp dir per
run, start, wait, leftovers) and a snapshot of what a run leaves stored."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from tune_cilp.experiment.lock import LOCK_FILE

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300


def snapshot(root: Path, *, exact: bool = False) -> dict[str, tuple]:
    """Every file under root by size and SHA-256, the driver's lock file aside (each driver
    writes its pid there); `exact` adds each file's mtime and every directory (then nothing
    was even rewritten or created)."""
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
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        state[rel] = (info.st_size, info.st_mtime_ns, digest) if exact else (info.st_size, digest)
    return state


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


def run_command(dataset: Path, storage: Path, *extra: str) -> list[str]:
    """`python -m tune_cilp.run` on `dataset` into `storage`, W&B off."""
    return [
        *(sys.executable, "-m", "tune_cilp.run", "--dataset", str(dataset)),
        *("--storage-path", str(storage), "--wandb", "disabled", *extra),
    ]


class RayEnv:
    """Environment for runner subprocesses with a private Ray temp dir, so every Ray process a
    run starts can be found (by that dir in its command line) and stopped afterwards."""

    def __init__(self, **extra: str) -> None:
        # Short path: Ray's unix sockets live under it (107-byte limit).
        self.tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(RAY_TMPDIR=self.tmp, **extra)

    def leftovers(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(self.tmp in arg for arg in proc.info["cmdline"] or ()):
                    found.append(proc)
        return found

    def close(self) -> None:
        for proc in self.leftovers():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


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
