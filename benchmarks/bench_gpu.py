"""GPU speed: one trial's epoch, four trials sharing one GPU, memory per trial, the fusion run.

(1) s/epoch of concat-maxpool (bf16 autocast, channels_last, default data) with the Trainer
    directly: the best epoch of --epochs after the first (which includes one-off set-up);
(2) four trials through Ray Tune for real: `python -m tune_cilp.run --space seed-ablation
    --seeds 51,52` (concat maxpool and stride x 2 seeds = 4 trials) with --gpus-per-trial 0.25
    (all four at once) and with --gpus-per-trial 1 (one after another); throughput = trials x
    epochs / wall, over the command's wall time and over the trials' own span (first epoch start
    to last report, Ray's start-up excluded; Ray's timestamps are whole seconds); the ratio;
(3) peak GPU memory per model: trials report peak_memory_mb; for a figure per model outside
    Tune, every model (variant x downsampling) is trained one bf16 epoch with the Trainer here and
    torch.cuda.max_memory_allocated read (the data resident on the GPU included, as in a trial;
    the CUDA context not);
(4) wall time of `python -m tune_cilp.run --space fusion --epochs 5` (10 trials);
(5) packed seeds: K = 1, 2, 4, 8, 16 seeds of concat-maxpool as one PackedTrainer (loop and
    vmap) against K solo trainers one after another, s/epoch (benchmarks/bench_packed.py);
(6) what a report with its checkpoint costs per epoch outside the epoch: time_this_iter_s -
    epoch_time_s of (2)'s rows (the state written, Tune's copy, the report's round trip);
(7) the seed's many-variant ranking, `python -m tune_cilp.run --space fusion --seeds 51,52,53`
    (30 trials x 50 epochs), its wall time and, apart, the time before the first trial started
    (Ray's start-up and the driver's).
Targets: (1) <= 0.1 s/epoch; (2) four 0.25-GPU trials >= 2.5x the throughput of one alone;
(5) K = 8 packed >= 4x the throughput of 8 separate trials; (7) <= 120 s of trial time.
Runs write to a temporary directory, with W&B disabled in (2). Without CUDA it refuses (exit 2)
unless --cpu: then it runs (5) on the CPU cores only (K = 1, 2, 4).

    python -m benchmarks.bench_gpu [--epochs 6] [--tune-epochs 10] [--parts 1234567] [--cpu]

(from the repository root: -m puts it first on the path, for tune_cilp and benchmarks).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_epoch import best_after_first, trainer_epochs
from tune_cilp.core.errors import ArgumentParser, UserError, run_cli
from tune_cilp.data import CilpArrays, load_arrays
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer
from tune_cilp.fusion.variants import DOWNSAMPLES, list_variants

ROOT = Path(__file__).resolve().parents[1]
TARGET_EPOCH_S = 0.1
TARGET_SHARING = 2.5
SHARED_RUN = ["--space", "seed-ablation", "--seeds", "51,52"]  # 2 downsamplings x 2 seeds
SHARED_TRIALS = 4
FUSION_RUN = ["--space", "fusion", "--epochs", "5"]
SERIES_RUN = ["--space", "fusion", "--seeds", "51,52,53", "--wandb", "disabled"]
TARGET_SERIES_S = 120
PACKED_KS = {"cuda": [1, 2, 4, 8, 16], "cpu": [1, 2, 4]}
TARGET_PACKED = 4.0  # K = 8


def epoch_seconds(data: CilpArrays, epochs: int) -> tuple[float, list[float]]:
    """Best s/epoch after the first of concat-maxpool in bf16 on the GPU, and every epoch's."""
    cfg = TrainConfig(variant="concat", downsample="maxpool", epochs=10**6, precision="bf16")
    times = list(itertools.islice(trainer_epochs(data, cfg, None, device="cuda"), epochs))
    return best_after_first(times), times


def peak_memory_mib(data: CilpArrays, variant: str, downsample: str) -> float:
    """torch.cuda.max_memory_allocated (MiB) over one bf16 epoch of a fresh Trainer."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()  # what earlier parts left: not this trial's
    cfg = TrainConfig(variant=variant, downsample=downsample, epochs=1, precision="bf16")
    Trainer(cfg, data, device="cuda").run_epoch()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def tune_run(storage: Path, name: str, options: list[str]) -> tuple[float, list[list[dict]]]:
    """Wall seconds of `python -m tune_cilp.run --name NAME ... OPTIONS` and each trial's rows."""
    cmd = [sys.executable, "-m", "tune_cilp.run", "--name", name, "--storage-path", str(storage)]
    cmd += options
    print(f"running: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    # This checkout's code, in the runner and in its Ray workers, whatever is installed.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        sys.exit(f"{tail}\nerror: {' '.join(cmd[1:])} exited {proc.returncode} (output above)")
    results = sorted((storage / name).glob("*/result.json"))
    return wall, [[json.loads(line) for line in p.read_text().splitlines()] for p in results]


def span_seconds(trials: list[list[dict[str, Any]]]) -> float:
    """From the earliest trial start to the latest report (Ray's whole-second timestamps)."""
    starts = [rows[-1]["timestamp"] - rows[-1]["time_total_s"] for rows in trials]
    return max(rows[-1]["timestamp"] for rows in trials) - min(starts)


def report_cost(trials: list[list[dict[str, Any]]]) -> float:
    """Mean seconds per report outside the epoch (the checkpoint written, Tune's copy, the
    round trip with the driver): time_this_iter_s - epoch_time_s over every row."""
    gaps = [row["time_this_iter_s"] - row["epoch_time_s"] for rows in trials for row in rows]
    return sum(gaps) / len(gaps)


def start_up_seconds(wall_start: float, trials: list[list[dict[str, Any]]]) -> float:
    """From the command's start (time.time()) to its first trial's start."""
    return min(rows[-1]["timestamp"] - rows[-1]["time_total_s"] for rows in trials) - wall_start


def packed_rows(device: str, data: CilpArrays, epochs: int) -> list[tuple[str, str, str]]:
    """(5): K solo trainers against one packed trainer of K seeds, each mode."""
    from benchmarks.bench_packed import packed_seconds, solo_seconds
    from tune_cilp.fusion.packed import MODES

    cfg = TrainConfig(variant="concat", downsample="maxpool", precision="auto")
    rows = []
    for k in PACKED_KS[device]:
        solo = solo_seconds(cfg, data, k, epochs, device)
        for mode in MODES:
            packed = packed_seconds(cfg, data, k, epochs, device, mode)
            target = f">= {TARGET_PACKED}x" if k == 8 else ""
            figure = f"{solo:.3f} / {packed:.3f} s = {solo / packed:.2f}x"
            rows.append((f"(5) K={k} packed ({mode}): {k} solo epochs / 1 packed epoch",
                         figure, target))  # fmt: skip
            print(rows[-1][0], rows[-1][1], flush=True)
    return rows


def sharing(
    storage: Path, epochs: int
) -> tuple[dict[float, tuple[float, float]], list[list[dict[str, Any]]]]:
    """GPU fraction per trial -> (trial-epochs/s over the wall, over the trials' span); and the
    rows of the 0.25 run."""
    out, shared = {}, []
    for fraction in (0.25, 1.0):
        options = [*SHARED_RUN, "--epochs", str(epochs), "--gpus-per-trial", f"{fraction:g}"]
        wall, trials = tune_run(storage, f"share-{fraction:g}", [*options, "--wandb", "disabled"])
        if len(trials) != SHARED_TRIALS or any(len(rows) != epochs for rows in trials):
            sys.exit(
                f"error: expected {SHARED_TRIALS} trials of {epochs} epochs, got "
                f"{[len(rows) for rows in trials]} epochs per trial"
            )
        work = SHARED_TRIALS * epochs
        out[fraction] = (work / wall, work / span_seconds(trials))
        shared = shared or trials
        print(
            f"  {fraction:g} GPU per trial: wall {wall:.1f} s, {out[fraction][0]:.2f} "
            f"trial-epochs/s (wall), {out[fraction][1]:.2f} (span)",
            flush=True,
        )
    return out, shared


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="bench_gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of (1) (best after first)")
    parser.add_argument("--tune-epochs", type=int, default=10, help="epochs per trial in (2)")
    parser.add_argument("--parts", default="1234567", help="which of (1)-(7) to run, e.g. 13")
    parser.add_argument("--cpu", action="store_true", help="(5) on the CPU cores only")
    args = parser.parse_args(argv)
    if args.cpu:
        from benchmarks.bench_calibration import cpu_model

        print(f"bench_gpu --cpu on {cpu_model()}, {torch.get_num_threads()} threads", flush=True)
        rows = packed_rows("cpu", load_arrays(None), args.epochs)
        print("\n| measure | figure | machine |\n|---|---|---|")
        for measure, figure, _ in rows:
            print(f"| {measure} | {figure} | {cpu_model()} |")
        return 0
    if not torch.cuda.is_available():
        raise UserError("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    if args.epochs < 2 or args.tune_epochs < 1 or not set(args.parts) <= set("1234567"):
        raise UserError("--epochs >= 2, --tune-epochs >= 1, --parts digits from 1234567")

    machine = (
        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {torch.get_num_threads()} CPU threads"
    )
    print(f"bench_gpu on {machine}", flush=True)
    data = load_arrays(None)  # the default data, cached for the runs below as well
    rows: list[tuple[str, str, str]] = []
    if "1" in args.parts:
        best, times = epoch_seconds(data, args.epochs)
        print(f"(1) concat-maxpool bf16 epochs (s): {' '.join(f'{t:.3f}' for t in times)}")
        rows.append(("(1) concat-maxpool s/epoch, bf16", f"{best:.3f}", f"<= {TARGET_EPOCH_S}"))
    if "3" in args.parts:
        for variant, downsample in itertools.product(list_variants(), DOWNSAMPLES):
            mib = peak_memory_mib(data, variant, downsample)
            rows.append((f"(3) peak memory {variant}-{downsample}", f"{mib:.0f} MiB", ""))
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        if "2" in args.parts or "6" in args.parts:
            print(f"(2) {SHARED_TRIALS} trials, {args.tune_epochs} epochs each:", flush=True)
            rate, shared = sharing(Path(tmp), args.tune_epochs)
            for i, basis in enumerate(("command wall", "trials' span")):
                ratio = f"{rate[0.25][i] / rate[1.0][i]:.2f}x"
                measure = f"(2) throughput, 4 trials at 0.25 GPU / at 1 GPU, {basis}"
                rows.append((measure, ratio, f">= {TARGET_SHARING}x"))
            cost = report_cost(shared)
            rows.append(("(6) a report with its checkpoint, per epoch", f"{cost:.3f} s", ""))
        if "4" in args.parts:
            wall, trials = tune_run(Path(tmp), "fusion", FUSION_RUN)
            rows.append((f"(4) {' '.join(FUSION_RUN)} ({len(trials)} trials)", f"{wall:.1f} s", ""))
        if "7" in args.parts:
            began = time.time()
            wall, trials = tune_run(Path(tmp), "series", SERIES_RUN)
            start_up = start_up_seconds(began, trials)
            rows.append((f"(7) {' '.join(SERIES_RUN[:4])} ({len(trials)} trials): wall, of it "
                         "before the first trial", f"{wall:.1f} s, {start_up:.1f} s",
                         f"<= {TARGET_SERIES_S} s of trial time"))  # fmt: skip
    if "5" in args.parts:
        rows += packed_rows("cuda", data, args.epochs)

    print("\n| measure | figure | target | machine |\n|---|---|---|---|")
    for measure, figure, target in rows:
        print(f"| {measure} | {figure} | {target} | {machine} |")
    return 0


if __name__ == "__main__":
    run_cli(main)
