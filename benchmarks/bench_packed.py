"""Packed seeds against separate ones (issue 33), on the CPU cores or a GPU, on the default data:

(a) speed: for K = 1, 2, 4 (--ks) seeds of concat-maxpool, the s/epoch of K solo Trainers one
    after another against one PackedTrainer of the K seeds in each mode, loop and vmap (each the
    best epoch after the first, which includes one-off set-up), and the ratio: packing pays
    where it is above 1;
(b) drift: K seeds trained --drift-epochs epochs packed (each mode) and solo, in fp32; per epoch
    the largest relative difference of any seed's train_loss and val_loss between the two (loop:
    solo's kernels; vmap: batched kernels, which round differently, so a ReLU input within
    rounding of 0 can take the other side, and training carries that on).

Every figure is printed beside the CPU model (or GPU), the threads and the process's peak
resident memory, measured in the same run.

    python -m benchmarks.bench_packed [--device cpu|cuda] [--ks 1,2,4] [--epochs 3]
        [--drift-epochs 5] [--precision auto]
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import replace

import torch

from benchmarks.bench_calibration import cpu_model
from benchmarks.bench_epoch import best_after_first
from tune_cilp.core.errors import ArgumentParser, UserError, run_cli
from tune_cilp.data import CilpArrays, load_arrays
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer
from tune_cilp.fusion.packed import MODES, PackedTrainer, packed_configs
from tune_cilp.training.device import configure_process

SEEDS = list(range(51, 51 + 64))


def solo_seconds(cfg: TrainConfig, data: CilpArrays, k: int, epochs: int, device: str) -> float:
    """s/epoch of k solo trainers one after another (sum of each one's best after the first)."""
    total = 0.0
    for seed in SEEDS[:k]:
        trainer = Trainer(replace(cfg, seed=seed), data, device=device)
        total += best_after_first([trainer.run_epoch()["epoch_time_s"] for _ in range(epochs)])
    return total


def packed_seconds(
    cfg: TrainConfig, data: CilpArrays, k: int, epochs: int, device: str, mode: str
) -> float:
    packed = PackedTrainer(packed_configs(cfg, SEEDS[:k]), data, device=device, mode=mode)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        packed.run_epoch()
        times.append(time.perf_counter() - start)
    return best_after_first(times)


def drift(
    data: CilpArrays, k: int, epochs: int, device: str, mode: str
) -> list[tuple[float, float]]:
    """Per epoch, the largest relative packed-vs-solo difference of train_loss and val_loss."""
    cfg = TrainConfig(variant="concat", downsample="maxpool", epochs=epochs, precision="fp32")
    trainer = PackedTrainer(packed_configs(cfg, SEEDS[:k]), data, device=device, mode=mode)
    packed = list(trainer.epochs())
    solo = [
        list(Trainer(replace(cfg, seed=seed), data, device=device).epochs()) for seed in SEEDS[:k]
    ]
    return [
        tuple(  # type: ignore[misc]
            max(abs(packed[e][s][m] - solo[s][e][m]) / abs(solo[s][e][m]) for s in range(k))
            for m in ("train_loss", "val_loss")
        )
        for e in range(epochs)
    ]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="bench_packed", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--ks", default="1,2,4", help="seeds per packed trial, comma-separated")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per speed figure (>= 2)")
    parser.add_argument("--drift-epochs", type=int, default=5, help="0: no drift figure")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    args = parser.parse_args(argv)
    try:
        ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        raise UserError(f"--ks: expected comma-separated integers, got {args.ks!r}") from None
    if args.epochs < 2 or args.drift_epochs < 0 or not all(1 <= k <= len(SEEDS) for k in ks):
        raise UserError(f"--epochs >= 2, --drift-epochs >= 0, --ks each in 1..{len(SEEDS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch.cuda.is_available() is False")
    configure_process(device=args.device)
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu_model()
    machine = f"{where}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"bench_packed on {machine}", flush=True)
    data = load_arrays(None)
    cfg = TrainConfig(variant="concat", downsample="maxpool", precision=args.precision)
    rows = []
    for k in ks:
        solo = solo_seconds(cfg, data, k, args.epochs, args.device)
        for mode in MODES:
            packed = packed_seconds(cfg, data, k, args.epochs, args.device, mode)
            rows.append((f"K={k}: {k} solo epochs / 1 packed epoch of {k} seeds, {mode} (s)",
                         f"{solo:.2f} / {packed:.2f} = {solo / packed:.2f}x"))  # fmt: skip
            print(rows[-1][0], rows[-1][1], flush=True)
    if args.drift_epochs:
        k = max(ks)
        for mode in MODES:
            found = drift(data, k, args.drift_epochs, args.device, mode)
            for epoch, (train, val) in enumerate(found, 1):
                measure = f"drift, fp32, {mode}, K={k}, epoch {epoch}: largest relative"
                rows.append((f"{measure} difference train_loss / val_loss",
                             f"{train:.1e} / {val:.1e}"))  # fmt: skip
                print(rows[-1][0], rows[-1][1], flush=True)
    print(f"\nprecision {args.precision}; peak resident memory {peak_rss_mib():.0f} MiB")
    print("| measure | figure | machine |\n|---|---|---|")
    for measure, figure in rows:
        print(f"| {measure} | {figure} | {machine} |")
    return 0


if __name__ == "__main__":
    run_cli(main)
