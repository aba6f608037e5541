"""The function trainable: resources, reports, and resuming a crashed trial from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import ray

from tune_cilp.run import main
from tune_cilp.trainable import CRASH_ENV, variant_key


def test_variant_key() -> None:
    assert variant_key({"variant": "concat", "downsample": "maxpool", "seed": 3}) == (
        "concat-maxpool"
    )


def test_killed_trial_process_is_retried_from_its_checkpoint(
    tiny_raw: Path, tmp_path: Path, restore_env: None
) -> None:
    # Every trial's process exits in epoch 2 of its first attempt, after epoch 1's checkpoint.
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {CRASH_ENV: "2"}})
    try:
        argv = ["--dataset", str(tiny_raw), "--storage-path", str(tmp_path), "--epochs", "2"]
        assert main([*argv, "--max-failures", "1", "--wandb", "disabled"]) == 0
    finally:
        ray.shutdown()
    results = sorted((tmp_path / "seed-ablation").glob("*/result.json"))
    assert len(results) == 2
    for path in results:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [row["epoch"] for row in rows] == [1, 2]  # epoch 2 continued from epoch 1's state
        assert rows[0]["pid"] != rows[1]["pid"]  # in a new process after the crash
