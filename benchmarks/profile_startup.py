"""Where the start-up of `python -m tune_cilp.run` goes, from the command to its first epoch.

Runs the real command (default data, --epochs N, W&B disabled, a fresh temporary storage path)
and times, from the moment it is launched:

  driver ready        the driver printed "experiment:" (interpreter, imports, checks, data)
  Ray started         Ray printed "Started a local Ray instance"
  trials starting     the driver printed "setup took" (trial resources, Tuner built)
  trial process       the raylet started the trial's worker process   } from Ray's session
  worker connected    its core worker came up (python + import ray)   } logs (a private
  actor created       the trial's actor was created (Tune's wrapper)  } RAY_TMPDIR per run)
  trial entered       Tune called the trainable (first epoch on disk - Tune's time_this_iter_s)
  first epoch begun   the Trainer started its first epoch (on disk - epoch_time_s)
  first epoch on disk result.json of a trial is no longer empty
  last epoch on disk  the last write of a result.json (after it: the table, Ray's shutdown)
  exit                the command exited

and, in fresh interpreters, what importing the driver's and the trial's modules costs. Prints
the CPU model and the bf16 matmul peak measured in the same run beside the figures.

    python -m benchmarks.profile_startup [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks.bench_epoch import cpu_summary, matmul_peak
from tune_cilp.core.errors import ArgumentParser, run_cli
from tune_cilp.training.device import configure_process

MARKERS = {  # phase -> the start of a line the command prints when it is reached
    "driver ready": "experiment:",
    "Ray started": "Started a local Ray instance",
    "trials starting": "setup took",
}


def import_seconds(module: str) -> float:
    """Wall time of a fresh interpreter that imports `module` (interpreter start included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def _watch_lines(stream: object, start: float, seen: dict[str, float]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        for phase, marker in MARKERS.items():
            if phase not in seen and marker in line:
                seen[phase] = time.perf_counter() - start


def first_reported(experiment: Path) -> Path | None:
    """A trial's result.json that is no longer empty, if there is one."""
    return next((p for p in experiment.glob("*/result.json") if p.stat().st_size > 0), None)


def _log_time(line: str) -> float | None:
    """The wall-clock time of a Ray C++ log line ("[2026-12-02 06:59:48,106 I ...")."""
    match = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
    if match is None:
        return None
    stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp() + int(match.group(2)) / 1000


def worker_events(logs: Path, pid: int) -> dict[str, float]:
    """When the raylet started the trial's worker process, when its core worker came up and
    when its actor (the trial) was created, from Ray's session logs (wall-clock seconds)."""
    patterns = {
        "trial process": (logs / "raylet.out", f"Started worker process with pid {pid} "),
        "worker connected": (None, "Constructing CoreWorkerProcess"),
        "actor created": (None, "Actor creation task finished"),
    }
    worker_log = next(iter(logs.glob(f"python-core-worker-*_{pid}.log")), None)
    events = {}
    for phase, (path, marker) in patterns.items():
        path = path or worker_log
        if path is None or not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if marker in line and (at := _log_time(line)) is not None:
                events[phase] = at
                break
    return events


def one_run(epochs: int) -> dict[str, float]:
    """Time the phases of one command (see the module docstring), in seconds from its launch."""
    with tempfile.TemporaryDirectory() as storage, tempfile.TemporaryDirectory() as ray_tmp:
        experiment = Path(storage) / "startup"
        cmd = [sys.executable, "-m", "tune_cilp.run", "--epochs", str(epochs), "--name",
               "startup", "--storage-path", storage, "--wandb", "disabled"]  # fmt: skip
        env = {**os.environ, "RAY_TMPDIR": ray_tmp}  # this run's Ray logs, and only its
        seen: dict[str, float] = {}
        first_result: Path | None = None
        launched = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
        reader = threading.Thread(target=_watch_lines, args=(proc.stdout, start, seen))
        reader.start()
        while proc.poll() is None:  # a glob every 50 ms: light enough not to slow the run
            if first_result is None:
                first_result = first_reported(experiment)
                if first_result is not None:
                    seen["first epoch on disk"] = time.perf_counter() - start
            time.sleep(0.05)
        seen["exit"] = time.perf_counter() - start
        reader.join()
        if proc.returncode != 0 or first_result is None:
            raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}")
        first = json.loads(first_result.read_text().splitlines()[0])
        last_write = max(p.stat().st_mtime for p in experiment.glob("*/result.json"))
        seen["last epoch on disk"] = last_write - launched
        logs = Path(ray_tmp, "ray", "session_latest", "logs")
        for phase, at in worker_events(logs, int(first["pid"])).items():
            seen[phase] = at - launched
    on_disk = seen["first epoch on disk"]
    seen["trial entered"] = on_disk - first["time_this_iter_s"]
    seen["first epoch begun"] = on_disk - first["epoch_time_s"]
    seen["first epoch_time_s"] = first["epoch_time_s"]
    return seen


PHASES = ["driver ready", "Ray started", "trials starting", "trial process", "worker connected",
          "actor created", "trial entered", "first epoch begun", "first epoch on disk",
          "last epoch on disk", "exit"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the command (>= 1)")
    parser.add_argument("--repeats", type=int, default=3, help="commands to time (>= 1)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be >= 1")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    subprocess.run(
        [sys.executable, "-c", "from tune_cilp.data import load_arrays; load_arrays(None)"],
        check=True,
    )  # fmt: skip  (the data cached, as a user has it)
    runs = [one_run(args.epochs) for _ in range(args.repeats)]
    imports = {m: import_seconds(m) for m in ("torch", "ray.tune", "tune_cilp.run",
                                              "tune_cilp.experiment.trial")}  # fmt: skip
    configure_process(threads=os.cpu_count())
    peak = matmul_peak(torch.bfloat16)
    print(f"{cpu_summary()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"bf16 matmul peak {peak:.0f} GFLOP/s (same run)")  # fmt: skip
    print(f"python -m tune_cilp.run --epochs {args.epochs}: seconds from the command "
          f"(median of {len(runs)}; each run; step from the phase before)")  # fmt: skip
    previous = 0.0
    for phase in PHASES:
        values = sorted(r[phase] for r in runs if phase in r)
        if not values:
            print(f"  {phase:20s}   (not seen)")
            continue
        median = values[len(values) // 2]
        each = " ".join(f"{v:5.1f}" for v in (r.get(phase, float("nan")) for r in runs))
        print(f"  {phase:20s} {median:6.2f}   [{each}]   +{median - previous:5.2f}")
        previous = median
    epoch = sorted(r["first epoch_time_s"] for r in runs)[len(runs) // 2]
    print(f"  the first epoch itself (epoch_time_s): {epoch:.2f} s")
    print("fresh interpreter importing (interpreter start included):")
    for module, seconds in imports.items():
        print(f"  {module:20s} {seconds:5.2f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
