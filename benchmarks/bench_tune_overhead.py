"""Ray Tune's cost: the seed ablation under `python -m tune_cilp.run` vs a plain Python loop.

Runs, on the same machine and data (the default synthetic set, cached), for each --epochs:
  (plain) the two seed-ablation trainings (concat maxpool, then stride) back to back in this
          process, with all the machine's cores, same epochs and precision;
  (tune)  `python -m tune_cilp.run --epochs N` as a subprocess (threads per trial as the CPU
          plan decides), timed from the command to its exit, and to the first epoch on disk.
Prints the CPU model and the matmul peaks measured in the same run, wall times, Tune's own time
(wall minus the trials' training: summed when the CPU plan ran them in turn, else the longest),
split, when in turn, into the trials' set-up, their time after each epoch and the rest, and
tune / plain; beside it, tune / (plain + what a script pays for its interpreter and
imports, which the in-process loop does not).

    python benchmarks/bench_tune_overhead.py --epochs 10,50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import cpu_summary, matmul_peak  # noqa: E402

from tune_cilp.data import load_arrays  # noqa: E402
from tune_cilp.fusion.fusion_config import TrainConfig  # noqa: E402
from tune_cilp.fusion.fusion_trainer import Trainer  # noqa: E402
from tune_cilp.training.device import configure_process  # noqa: E402


def plain(epochs: int, precision: str) -> tuple[float, list[float]]:
    """Both seed-ablation trainings back to back; returns wall time and per-run train time."""
    data = load_arrays(None)
    start, per_run = time.perf_counter(), []
    for downsample in ("maxpool", "stride"):
        cfg = TrainConfig(downsample=downsample, epochs=epochs, precision=precision)
        configure_process(threads=os.cpu_count())
        trainer = Trainer(cfg, data)
        t0 = time.perf_counter()
        while not trainer.done:
            trainer.run_epoch()
        per_run.append(time.perf_counter() - t0)
    return time.perf_counter() - start, per_run


def has_first_result(experiment: Path) -> bool:
    return any(p.stat().st_size > 0 for p in experiment.glob("*/result.json"))


def tune(epochs: int, precision: str) -> dict[str, float]:
    """The runner as a user calls it; times to exit and to the first reported epoch."""
    with tempfile.TemporaryDirectory() as storage:
        experiment = Path(storage) / "overhead"
        cmd = [sys.executable, "-m", "tune_cilp.run", "--epochs", str(epochs), "--name",
               "overhead", "--storage-path", storage, "--wandb", "disabled",
               "--precision", precision]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = None
        while proc.poll() is None:
            if first is None and has_first_result(experiment):
                first = time.perf_counter() - start
            time.sleep(0.05)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}")
        trials, threads, setup, per_epoch = [], [], [], []
        for result in sorted(experiment.glob("*/result.json")):
            rows = [json.loads(line) for line in result.read_text().splitlines() if line]
            trials.append(sum(row["epoch_time_s"] for row in rows))
            threads.append(rows[0]["threads"])
            # Tune times each iteration from the call into the trial: the first one includes
            # the trial's own set-up (imports, the Trainer), the others the checkpoint and the
            # report after the epoch.
            outside = [row["time_this_iter_s"] - row["epoch_time_s"] for row in rows]
            setup.append(outside[0])
            per_epoch.extend(outside[1:])
    one_at_a_time = sum(threads) > (os.cpu_count() or 1)  # the CPU plan ran them in turn
    return {"wall": wall, "first_epoch": first or float("nan"), "trial_train_s": trials,
            "one_at_a_time": one_at_a_time, "trial_setup_s": setup,
            "per_epoch_s": per_epoch}  # fmt: skip


def script_start_s() -> float:
    """What a plain script pays before its loop and the in-process loop above does not: the
    interpreter and the imports (fresh interpreter, median of 3)."""
    code = "import torch, tune_cilp.fusion.fusion_trainer, tune_cilp.data"
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="10,50", help="epoch counts, comma-separated")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    configure_process(threads=os.cpu_count())
    peaks = {d: matmul_peak(d) for d in (torch.float32, torch.bfloat16)}
    print(f"{cpu_summary()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(
        f"matmul peak on {os.cpu_count()} threads, same run: fp32 {peaks[torch.float32]:.0f}, "
        f"bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s"
    )
    start_s = script_start_s()
    for epochs in (int(e) for e in args.epochs.split(",")):
        plain_wall, plain_runs = plain(epochs, args.precision)
        t = tune(epochs, args.precision)
        print(f"\nseed-ablation, {epochs} epochs, precision {args.precision}")
        training = sum(plain_runs)
        print(f"plain loop, back to back:    {plain_wall:7.1f} s  (training {training:.1f} s)")
        print(f"python -m tune_cilp.run:     {t['wall']:7.1f} s  (command to exit)")
        print(f"  first epoch on disk after: {t['first_epoch']:7.1f} s")
        trials = " + ".join(f"{s:.1f}" for s in t["trial_train_s"])
        print(f"  trials' own training time: {trials} s")
        if t["one_at_a_time"]:
            training, how = sum(t["trial_train_s"]), "wall - the trials' training, run in turn"
        else:
            training, how = max(t["trial_train_s"]), "wall - the longest trial"
        overhead = t["wall"] - training
        print(f"  Tune's own time ({how}): {overhead:.1f} s "
              f"({100 * overhead / t['wall']:.0f} % of wall)")  # fmt: skip
        if t["one_at_a_time"]:  # in turn, the parts add up to Tune's own time
            setup, per_epoch = sum(t["trial_setup_s"]), sum(t["per_epoch_s"])
            mean = per_epoch / max(len(t["per_epoch_s"]), 1)
            print(f"    in the trials before their first epoch (imports, Trainer): {setup:.1f} s")
            print(
                f"    in the trials after each epoch (checkpoint, Tune's copy, report): "
                f"{per_epoch:.1f} s ({1000 * mean:.0f} ms x {len(t['per_epoch_s'])})"
            )
            print(f"    outside the trials (driver, Ray's start, worker start, shutdown): "
                  f"{overhead - setup - per_epoch:.1f} s")  # fmt: skip
        print(f"tune / plain wall time:      {t['wall'] / plain_wall:7.2f}x")
        print(f"  (a plain script also pays {start_s:.1f} s of interpreter and imports: "
              f"tune / (plain + that) = {t['wall'] / (plain_wall + start_s):.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
