"""Where a training step's time goes: a torch.profiler table of the Trainer's training steps.

For each layer order (the current one and conv -> ReLU -> pool, the order before; see
bench_epoch.layer_order) it builds a Trainer on --steps batches of the default data, trains one
warm-up pass, then profiles one pass of the same steps and prints the top ops by self CPU time
and the time per step. Orders alternate --repeats times and the fastest profiled pass of each is
printed: the machine is shared, the fastest pass is the least disturbed.

    python -m benchmarks.profile_step --precision bf16 --downsample maxpool
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_epoch import LAYER_ORDERS, cpu_summary, layer_order
from tune_cilp.core.errors import ArgumentParser, run_cli
from tune_cilp.data import load_arrays
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer
from tune_cilp.training.device import configure_process


def profiled_pass(trainer: Trainer) -> tuple[float, profile]:
    """Seconds and profile of one pass over the trainer's training data."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        # The training steps alone: run_epoch would add the evaluation pass.
        trainer.train_epoch()
        elapsed = time.perf_counter() - start
    return elapsed, prof


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="profile_step", description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--downsample", choices=["maxpool", "stride"], default="maxpool")
    parser.add_argument("--variant", default="concat")
    parser.add_argument("--steps", type=int, default=8, help="training steps per pass")
    parser.add_argument("--repeats", type=int, default=3, help="profiled passes per order")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--top", type=int, default=15, help="ops shown")
    args = parser.parse_args(argv)

    data = load_arrays(None)
    cfg = TrainConfig(
        variant=args.variant, downsample=args.downsample, precision=args.precision, batch_size=32
    )
    train_index = np.flatnonzero(data.is_train)[: cfg.batch_size * args.steps]
    subset = data.subset(np.concatenate([train_index, np.flatnonzero(~data.is_train)[:1]]))
    trainers = {}
    configure_process(threads=args.threads)
    for order in LAYER_ORDERS:
        with layer_order(order):
            trainers[order] = Trainer(cfg, subset, device="cpu")
        trainers[order].train_epoch()  # warm-up: allocator, oneDNN primitive caches
    best: dict[str, tuple[float, profile]] = {}
    for _ in range(args.repeats):
        for order, trainer in trainers.items():
            elapsed, prof = profiled_pass(trainer)
            if order not in best or elapsed < best[order][0]:
                best[order] = (elapsed, prof)

    name = f"{args.variant}-{args.downsample} {args.precision}"
    print(f"{cpu_summary()}, {args.threads} threads, torch {torch.__version__}")
    for order, (elapsed, prof) in best.items():
        step = elapsed / args.steps
        print(
            f"\n{name}, layer order {order}: {1000 * step:.1f} ms/step (batch 32, profiled; "
            f"fastest of {args.repeats} passes of {args.steps} steps)"
        )
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    return 0


if __name__ == "__main__":
    run_cli(main)
