"""Ray Tune's cost: the seed ablation under `python -m tune_cilp.run` vs a plain Python loop.

Runs, on the same machine and data (the default synthetic set, cached):
  (plain) the two seed-ablation trainings (concat maxpool, then stride) back to back in this
          process, with all the machine's cores, same epochs and precision;
  (tune)  `python -m tune_cilp.run --epochs N` as a subprocess (two trials side by side, one
          core each), timed from the command to its exit, and to the first epoch on disk.
Prints wall times, Tune's overhead (tune wall vs the sum of its trials' own training time) and
the speed-up of running the trials side by side.

    python benchmarks/bench_tune_overhead.py --epochs 5
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

from tune_cilp.data import load_arrays
from tune_cilp.train import TrainConfig, Trainer


def plain(epochs: int, precision: str) -> tuple[float, list[float]]:
    """Both seed-ablation trainings back to back; returns wall time and per-run train time."""
    data = load_arrays(None)
    start, per_run = time.perf_counter(), []
    for downsample in ("maxpool", "stride"):
        cfg = TrainConfig(variant="concat", downsample=downsample, epochs=epochs)
        cfg = TrainConfig(**{**cfg.to_dict(), "precision": precision})
        trainer = Trainer(cfg, data, threads=os.cpu_count())
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
        trials = []
        for result in sorted(experiment.glob("*/result.json")):
            rows = [json.loads(line) for line in result.read_text().splitlines() if line]
            trials.append(sum(row["epoch_time_s"] for row in rows))
    return {"wall": wall, "first_epoch": first or float("nan"), "trial_train_s": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    plain_wall, plain_runs = plain(args.epochs, args.precision)
    t = tune(args.epochs, args.precision)
    cores = os.cpu_count()
    print(f"seed-ablation, {args.epochs} epochs, precision {args.precision}, {cores} cores")
    print(f"plain loop, back to back:    {plain_wall:7.1f} s  (training {sum(plain_runs):.1f} s)")
    print(f"python -m tune_cilp.run:     {t['wall']:7.1f} s  (command to exit)")
    print(f"  first epoch on disk after: {t['first_epoch']:7.1f} s")
    print(f"  trials' own training time: {' + '.join(f'{s:.1f}' for s in t['trial_train_s'])} s")
    overhead = t["wall"] - max(t["trial_train_s"])
    print(f"  Tune's own time (wall - longest trial): {overhead:.1f} s "
          f"({100 * overhead / t['wall']:.0f} % of wall)")  # fmt: skip
    print(f"tune / plain wall time:      {t['wall'] / plain_wall:7.2f}x")


if __name__ == "__main__":
    main()
