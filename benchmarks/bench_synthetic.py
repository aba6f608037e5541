"""Synthetic generator speed: scenes/second for rendering only, and for rendering + writing files.

    .venv/bin/python benchmarks/bench_synthetic.py [--scenes 1074] [--repeats 3]

Prints the best of ``repeats`` runs (the machine is shared; the best run is the least disturbed).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tune_cilp.core.errors import ArgumentParser, run_cli
from tune_cilp.data.constants import LABELS
from tune_cilp.data.synthetic import (
    DEFAULT_SPHERE_FRACTION,
    class_counts,
    generate_raw,
    render_camera,
    render_lidar,
    sample_scenes,
)


def render_only(scenes: int, seed: int) -> None:
    counts = class_counts(scenes, DEFAULT_SPHERE_FRACTION)
    scene_list = sample_scenes(max(counts.values()), seed)
    for shape in LABELS:
        render_lidar(shape, scene_list[: counts[shape]])
        render_camera(shape, scene_list[: counts[shape]])


def render_and_write(scenes: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate_raw(Path(tmp) / "raw", scenes=scenes, seed=seed)


def best_time(fn, scenes: int, repeats: int) -> float:
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        fn(scenes, seed)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1074, help="scenes per run (both classes)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    args = parser.parse_args(argv)
    for name, fn in (("render only", render_only), ("render + write", render_and_write)):
        seconds = best_time(fn, args.scenes, args.repeats)
        rate = args.scenes / seconds
        print(f"{name:15s} {args.scenes} scenes in {seconds:6.2f} s = {rate:8.0f} scenes/s")
    return 0


if __name__ == "__main__":
    run_cli(main)
