"""Thread scaling of one training epoch: the measurement behind tune_cilp/experiment/cpu_plan.py.

Trains concat-maxpool and concat-stride (default data, the run's precision) for --epochs epochs
at each thread count, round-robin so that load from other processes hits every count alike,
and prints the best epoch per count, the speed-up over one thread, the CPU model and the bf16
and fp32 matmul peaks measured in the same run.

    .venv/bin/python benchmarks/bench_threads.py --threads 1,2 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import cpu_summary, matmul_peak  # noqa: E402

from tune_cilp.data import load_arrays  # noqa: E402
from tune_cilp.experiment.cpu_plan import TWO_THREAD_SPEEDUP  # noqa: E402
from tune_cilp.fusion.fusion_config import TrainConfig  # noqa: E402
from tune_cilp.fusion.fusion_trainer import Trainer  # noqa: E402
from tune_cilp.training.device import configure_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    data = load_arrays(None)
    best: dict[tuple[str, int], float] = {}
    trainers = {}
    for downsample in ("maxpool", "stride"):
        cfg = TrainConfig(downsample=downsample, epochs=args.epochs + 1, precision=args.precision)
        for t in counts:
            trainers[(downsample, t)] = Trainer(cfg, data)
    precision = next(iter(trainers.values())).precision
    for epoch in range(args.epochs + 1):  # the first epoch includes one-off set-up
        for (downsample, t), trainer in trainers.items():
            configure_process(threads=t)
            seconds = trainer.run_epoch()["epoch_time_s"]
            if epoch:
                best[(downsample, t)] = min(best.get((downsample, t), seconds), seconds)
    configure_process(threads=max(counts))
    peaks = {d: matmul_peak(d) for d in (torch.float32, torch.bfloat16)}
    print(f"{cpu_summary()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {precision}")
    print(
        f"matmul peak on {max(counts)} threads, same run: fp32 {peaks[torch.float32]:.0f}, "
        f"bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s"
    )
    for downsample in ("maxpool", "stride"):
        one = best[(downsample, counts[0])]
        for t in counts:
            s = best[(downsample, t)]
            print(f"concat-{downsample:7s} {t:2d} thread(s): {s:6.2f} s/epoch, {one / s:4.2f}x")
    print(f"cpu_plan.py assumes {TWO_THREAD_SPEEDUP}x at 2 threads")


if __name__ == "__main__":
    main()
