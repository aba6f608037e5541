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
(4) wall time of `python -m tune_cilp.run --space fusion --epochs 5` (10 trials).
Targets: (1) <= 0.1 s/epoch; (2) four 0.25-GPU trials >= 2.5x the throughput of one alone.
Runs write to a temporary directory, with W&B disabled in (2). Without CUDA it refuses (exit 2).

    python -m benchmarks.bench_gpu [--epochs 6] [--tune-epochs 10] [--parts 1234]

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


def sharing(storage: Path, epochs: int) -> dict[float, tuple[float, float]]:
    """GPU fraction per trial -> (trial-epochs/s over the wall, over the trials' span)."""
    out = {}
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
        print(
            f"  {fraction:g} GPU per trial: wall {wall:.1f} s, {out[fraction][0]:.2f} "
            f"trial-epochs/s (wall), {out[fraction][1]:.2f} (span)",
            flush=True,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="bench_gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of (1) (best after first)")
    parser.add_argument("--tune-epochs", type=int, default=10, help="epochs per trial in (2)")
    parser.add_argument("--parts", default="1234", help="which of (1)-(4) to run, e.g. 13")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise UserError("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    if args.epochs < 2 or args.tune_epochs < 1 or not set(args.parts) <= set("1234"):
        raise UserError("--epochs >= 2, --tune-epochs >= 1, --parts digits from 1234")

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
        if "2" in args.parts:
            print(f"(2) {SHARED_TRIALS} trials, {args.tune_epochs} epochs each:", flush=True)
            rate = sharing(Path(tmp), args.tune_epochs)
            for i, basis in enumerate(("command wall", "trials' span")):
                ratio = f"{rate[0.25][i] / rate[1.0][i]:.2f}x"
                measure = f"(2) throughput, 4 trials at 0.25 GPU / at 1 GPU, {basis}"
                rows.append((measure, ratio, f">= {TARGET_SHARING}x"))
        if "4" in args.parts:
            wall, trials = tune_run(Path(tmp), "fusion", FUSION_RUN)
            rows.append((f"(4) {' '.join(FUSION_RUN)} ({len(trials)} trials)", f"{wall:.1f} s", ""))

    print("\n| measure | figure | target | machine |\n|---|---|---|---|")
    for measure, figure, target in rows:
        print(f"| {measure} | {figure} | {target} | {machine} |")
    return 0


if __name__ == "__main__":
    run_cli(main)
