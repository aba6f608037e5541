"""Time one training epoch several ways on one machine, threads and data (a benchmark, not a test).

(a) seed-style: a torch Dataset that decodes each PNG with PIL and builds the tensors per item, a
    DataLoader with batch 32, validation without no_grad, the seed's layer order (as the seed
    notebook did);
(b) our Trainer in fp32 (with channels_last, its default on CPU);
(c) our Trainer with its fastest options (bf16 autocast + channels_last).
With --ab, (b) and (c) also run with the layer order before pool-then-ReLU (conv -> ReLU ->
pool), the A/B of that change in the same run.

Epochs run round-robin across the pipelines, so load from other processes hits all alike.
It prints s/epoch (best epoch of --epochs after the first, which includes one-off set-up),
samples/s, achieved GFLOP/s from the models' analytic FLOPs (training = 3x forward) next to the
machine's fp32 and bf16 matmul peak measured in the same run on the same threads, the CPU model
and its bf16 hardware, and each row's speed-up over the model's first row. --late-epochs N then
trains (b) for N epochs with flush-to-zero on and off and compares early with late epoch times.

    .venv/bin/python benchmarks/bench_epoch.py --threads 2 [--ab] [--skip-seed]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tune_cilp.core.errors import ArgumentParser, UserError, run_cli
from tune_cilp.data import DATASET_FLAGS, CilpArrays, depth_to_xyza, generate_raw, load_arrays
from tune_cilp.fusion import fusion_model as models
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_model import build_model
from tune_cilp.fusion.fusion_trainer import Trainer
from tune_cilp.fusion.variants import ModelConfig, forward_flops
from tune_cilp.training.device import configure_process

LAYER_ORDERS = ("current", "conv-relu-pool")


def _conv_relu_pool(c_in: int, c_out: int, downsample: str | None) -> list[nn.Module]:
    # the fusion conv block before it pooled first: the same numbers, ReLU on 4x the elements
    stride = 2 if downsample == "stride" else 1
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU()]
    return layers + [nn.MaxPool2d(2)] if downsample == "maxpool" else layers


@contextlib.contextmanager
def layer_order(order: str) -> Iterator[None]:
    """Models built inside (by build_model, e.g. in a Trainer) use ``order``: "current"
    (tune_cilp.fusion.fusion_model as it is) or "conv-relu-pool" (the order before, for A/B
    timing)."""
    if order not in LAYER_ORDERS:
        raise UserError(f"layer order: expected one of {', '.join(LAYER_ORDERS)}, got {order!r}")
    saved = models.conv_block
    if order == "conv-relu-pool":
        models.conv_block = _conv_relu_pool
    try:
        yield
    finally:
        models.conv_block = saved


def cpu_summary() -> str:
    """The CPU model and its bf16 hardware from /proc/cpuinfo, e.g. "AMD EPYC (AVX512-BF16 yes,
    AMX no)": bf16 speed depends on both."""
    model, flags = "unknown CPU", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())

    def has(flag: str) -> str:
        return "yes" if flag in flags else "no"

    return f"{model} (AVX512-BF16 {has('avx512_bf16')}, AMX {has('amx_tile')})"


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Best GFLOP/s of an n x n matmul in ``dtype`` on the current threads (best of ``reps``:
    on a shared machine the best run is the one least disturbed by other processes)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


class SeedDataset(Dataset):
    """The seed's per-item pipeline: decode the PNG with PIL, load the depth map, build tensors."""

    def __init__(self, root: Path, ids: np.ndarray, labels: np.ndarray):
        self.root, self.ids, self.labels = root, ids, labels
        self.angles = {
            label: (np.load(root / label / "azimuth.npy"), np.load(root / label / "zenith.npy"))
            for label in ("cubes", "spheres")
        }

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        label, index = str(self.ids[i]).split("/")
        rgb = np.asarray(Image.open(self.root / label / "rgb" / f"{index}.png").convert("RGBA"))
        rgb = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255
        depth = np.load(self.root / label / "lidar" / f"{index}.npy")
        xyza = torch.from_numpy(depth_to_xyza(depth, *self.angles[label]))
        return rgb, xyza, torch.tensor(float(self.labels[i]))


def seed_epochs(root: Path, data: CilpArrays, model_cfg: ModelConfig) -> Iterator[float]:
    """Epoch times of the seed-style loop (fp32, contiguous, per-item decoding, the seed's layer
    order conv -> ReLU -> pool), one per next()."""
    torch.manual_seed(51)
    train_set = SeedDataset(root, data.train.ids, data.train.labels)
    val_set = SeedDataset(root, data.validation.ids, data.validation.labels)
    train_loader = DataLoader(
        train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(51)
    )
    val_loader = DataLoader(val_set, batch_size=32, shuffle=False)
    with layer_order("conv-relu-pool"):
        model = build_model(model_cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=50, eta_min=1e-6)
    while True:
        start = time.perf_counter()
        model.train()
        for rgb, xyza, y in train_loader:
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(rgb, xyza)[:, 0], y)
            loss.backward()
            optimizer.step()
        model.eval()
        val_loss = 0.0
        for rgb, xyza, y in val_loader:  # no torch.no_grad(), as in the seed
            val_loss += F.binary_cross_entropy_with_logits(model(rgb, xyza)[:, 0], y).item()
        scheduler.step()
        yield time.perf_counter() - start


def trainer_epochs(
    data: CilpArrays,
    cfg: TrainConfig,
    threads: int | None,
    order: str = "current",
    device: str = "cpu",
) -> Iterator[float]:
    """Epoch times of our Trainer with ``cfg`` and layer ``order``, one per next()."""
    configure_process(threads=threads, device=device)
    with layer_order(order):
        trainer = Trainer(cfg, data, device=device)
    while True:
        yield trainer.run_epoch()["epoch_time_s"]


def best_after_first(times: Sequence[float]) -> float:
    """The fastest epoch but the first (it includes one-off set-up) unless it is the only one:
    on a shared machine the fastest epoch is the least disturbed."""
    return min(times[1:] or times)


def late_epoch_check(data: CilpArrays, downsample: str, epochs: int, threads: int) -> None:
    """fp32 training for ``epochs`` with flush-to-zero on, then off: early vs late epoch times."""
    cfg = TrainConfig(downsample=downsample, epochs=epochs, precision="fp32")
    for ftz in (True, False):
        configure_process(threads=threads)
        trainer = Trainer(cfg, data, device="cpu")
        torch.set_flush_denormal(ftz)  # configure_process turns it on; off for the comparison
        times = [trainer.run_epoch()["epoch_time_s"] for _ in range(epochs)]
        early, late = statistics.median(times[1:4]), statistics.median(times[-3:])
        print(
            f"late-epoch check concat-{downsample} fp32 flush-to-zero {'on ' if ftz else 'off'}: "
            f"epochs 2-4 {early:.2f} s, last 3 {late:.2f} s, late/early {late / early:.2f}x "
            f"(all: {' '.join(f'{t:.2f}' for t in times)})"
        )
    torch.set_flush_denormal(True)


def pipelines(
    root: Path, data: CilpArrays, downsample: str, args: argparse.Namespace
) -> dict[str, tuple[str, Iterator[float]]]:
    """name -> (precision, epoch-time iterator) of the pipelines timed for concat-``downsample``."""
    never = 10**6  # epochs: never done, the benchmark decides how many run
    out: dict[str, tuple[str, Iterator[float]]] = {}
    if not args.skip_seed:
        out["(a) seed-style, fp32"] = (
            "fp32",
            seed_epochs(root, data, ModelConfig("concat", downsample)),
        )
    for tag, precision in (("b", "fp32"), ("c", "bf16")):
        cfg = TrainConfig(downsample=downsample, epochs=never, precision=precision)
        orders = LAYER_ORDERS if args.ab else LAYER_ORDERS[:1]
        for order in orders:
            name = f"({tag}) ours, {precision} + channels_last" + (f", {order}" if args.ab else "")
            out[name] = (precision, trainer_epochs(data, cfg, args.threads, order))
    return out


def build_parser() -> ArgumentParser:
    """The benchmark's options (the data source under the run command's names)."""
    parser = ArgumentParser(prog="bench_epoch", description=__doc__.splitlines()[0])
    parser.add_argument(
        *DATASET_FLAGS,
        dest="dataset",
        type=Path,
        help="a raw-layout directory: the seed's own pipeline reads its files (default: a fresh "
        "synthetic set of --scenes scenes)",
    )
    parser.add_argument("--scenes", type=int, default=1074, help="synthetic scenes (default 1074)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per pipeline (best counts)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--downsample", nargs="+", default=["maxpool", "stride"])
    parser.add_argument("--ab", action="store_true", help="(b), (c) in both layer orders too")
    parser.add_argument("--skip-seed", action="store_true", help="leave out (a)")
    parser.add_argument("--late-epochs", type=int, default=0, help="epochs of the FTZ check")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    cpu = cpu_summary()

    with tempfile.TemporaryDirectory(prefix="bench_epoch_") as tmp:
        root = args.dataset
        if root is None:
            root = generate_raw(Path(tmp) / "raw", scenes=args.scenes, seed=51)
        data = load_arrays(root)
        n_train, n_val = int(data.is_train.sum()), int((~data.is_train).sum())
        peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        rows = []
        for downsample in args.downsample:
            timed = pipelines(root, data, downsample, args)
            # Round-robin epochs, so that load from other processes hits every pipeline alike.
            times: dict[str, list[float]] = {name: [] for name in timed}
            for _ in range(args.epochs):
                for name, (_, epoch_times) in timed.items():
                    times[name].append(next(epoch_times))
            print(f"concat-{downsample} epoch times (s), {cpu}:", flush=True)
            for name, (precision, _) in timed.items():
                print(f"  {name}: {' '.join(f'{t:.2f}' for t in times[name])}", flush=True)
                rows.append((downsample, name, precision, best_after_first(times[name])))
        # Peak again at the end: on a shared machine the less disturbed measurement counts.
        peak["fp32"] = max(peak["fp32"], matmul_peak(torch.float32))
        peak["bf16"] = max(peak["bf16"], matmul_peak(torch.bfloat16))
        print(
            f"\n{cpu}, {args.threads} threads, torch {torch.__version__}; {n_train} train + "
            f"{n_val} validation samples; best epoch after the first of {args.epochs}; matmul "
            f"peak measured in this run: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 "
            f"{peak['bf16']:.0f} GFLOP/s\n"
        )
        print("| model | pipeline | s/epoch | samples/s | GFLOP/s | % of peak | vs first row |")
        print("|---|---|---|---|---|---|---|")
        base: dict[str, float] = {}
        for downsample, name, precision, best in rows:
            base.setdefault(downsample, best)
            flops = forward_flops(ModelConfig("concat", downsample)) * (3 * n_train + n_val)
            gflops = flops / best / 1e9
            print(
                f"| concat-{downsample} | {name} | {best:.2f} | {(n_train + n_val) / best:.0f} "
                f"| {gflops:.0f} | {100 * gflops / peak[precision]:.0f} % of {precision} "
                f"{peak[precision]:.0f} | {base[downsample] / best:.2f}x |"
            )
        if args.late_epochs:
            late_epoch_check(data, args.downsample[0], args.late_epochs, args.threads)
    return 0


if __name__ == "__main__":
    run_cli(main)
