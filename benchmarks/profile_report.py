"""What a trial pays after each epoch, piece by piece: the checkpoint it writes and Tune's copy.

After every epoch the trial function (tune_cilp/experiment/trial.py) takes the Trainer's
state_dict, writes it to a staging directory (save_checkpoint, atomic=False) and hands that
directory to tune.report, which copies it into the experiment with pyarrow's copy_files (what
Ray Tune 2.60's StorageContext.persist_current_checkpoint calls, in 64 MiB chunks), then waits
for the driver.
This times the first three on the default data's concat-maxpool Trainer (after one epoch, so
the optimiser state is full), in the same order and with the same calls, and beside them a
plain shutil.copyfile of the same file; bench_tune_overhead.py measures the whole per-epoch
cost inside a real run. Prints the CPU model and the bf16 matmul peak of the same run.

    python -m benchmarks.profile_report [--repeats 8] [--interval 3] [--dir DIR]

Pieces repeat --interval seconds apart (about one concat-maxpool epoch on 2 cores), keeping
the last two copies as the runner's Tune does, so that the disk writes them back meanwhile as
it does in a run: back to back, without deleting, the copies get throttled by the kernel's
dirty-page limit (measured: 90 ms per copy instead of 10).

--dir: where the staging and the "experiment" copies go (default: a temporary directory,
where Tune's staging directory also is); put it on the storage path's filesystem to measure
that one.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.fs
import torch
from ray.train._internal.storage import _pyarrow_fs_copy_files

from benchmarks.bench_epoch import cpu_summary, matmul_peak
from tune_cilp.core.checkpoint import STATE_FILE, save_checkpoint
from tune_cilp.core.errors import ArgumentParser, UserError, run_cli
from tune_cilp.data import load_arrays
from tune_cilp.experiment.driver import CHECKPOINTS_TO_KEEP
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer
from tune_cilp.training.device import configure_process

TRAIN_SCENES = 64  # the state's size does not depend on the data; one short epoch fills it


def measure(trainer: Trainer, root: Path, repeats: int, interval: float) -> dict[str, list[float]]:
    """Milliseconds per piece, `repeats` times, `interval` seconds apart, keeping the last
    CHECKPOINTS_TO_KEEP copies as Tune does (the disk writes them back meanwhile, as in a run)."""
    fs = pyarrow.fs.LocalFileSystem()
    times: dict[str, list[float]] = {"state_dict": [], "save": [], "tune_copy": [], "shutil": []}
    for i in range(repeats):
        time.sleep(interval)
        with tempfile.TemporaryDirectory(dir=root) as staging:
            t0 = time.perf_counter()
            state = trainer.state_dict()
            t1 = time.perf_counter()
            save_checkpoint(Path(staging) / STATE_FILE, state, atomic=False)
            t2 = time.perf_counter()
            dest = root / f"checkpoint_{i:06d}"
            fs.create_dir(str(dest))
            _pyarrow_fs_copy_files(staging, str(dest), fs, fs)
            t3 = time.perf_counter()
            shutil.copyfile(Path(staging) / STATE_FILE, root / f"shutil_{i}.pt")
            t4 = time.perf_counter()
        for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[key].append(1000 * seconds)
        if i >= CHECKPOINTS_TO_KEEP:
            shutil.rmtree(root / f"checkpoint_{i - CHECKPOINTS_TO_KEEP:06d}")
            (root / f"shutil_{i - CHECKPOINTS_TO_KEEP}.pt").unlink()
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="profile_report", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between epochs")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise UserError(f"--repeats: expected an integer >= 1, got {args.repeats}")
    if not args.interval >= 0:
        raise UserError(f"--interval: expected seconds >= 0, got {args.interval}")
    if args.dir is not None and not args.dir.is_dir():
        raise UserError(f"--dir: {args.dir} is not a directory")

    configure_process(threads=torch.get_num_threads())
    peak = matmul_peak(torch.bfloat16)
    data = load_arrays(None)
    train = np.flatnonzero(data.is_train)[:TRAIN_SCENES]
    small = data.subset(np.sort(np.concatenate([train, np.flatnonzero(~data.is_train)])))
    trainer = Trainer(TrainConfig(downsample="maxpool", epochs=2), small)
    trainer.run_epoch()
    size_mb = sum(t.numel() * t.element_size() for t in _tensors(trainer.state_dict())) / 1e6

    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        times = measure(trainer, Path(root), args.repeats, args.interval)
    print(f"{cpu_summary()}, torch {torch.__version__}; bf16 matmul peak {peak:.0f} GFLOP/s "
          f"(same run, {torch.get_num_threads()} threads)")  # fmt: skip
    print(f"concat-maxpool state: {size_mb:.1f} MB of tensors; ms, median [min-max] of "
          f"{args.repeats}:")  # fmt: skip
    labels = {
        "state_dict": "Trainer.state_dict()",
        "save": "save_checkpoint (staging)",
        "tune_copy": "Tune's copy (pyarrow)",
        "shutil": "shutil.copyfile, same file",
    }
    for key, label in labels.items():
        ms = times[key]
        print(f"  {label:28s} {statistics.median(ms):7.1f}  [{min(ms):.1f}-{max(ms):.1f}]")
    return 0


def _tensors(state: object) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, list | tuple):
        return [t for v in state for t in _tensors(v)]
    return []


if __name__ == "__main__":
    run_cli(main)
