"""A trial of packed seeds (--pack) read as one trial per seed (tune_cilp/results.py): from
result.json's nested rows and from progress.csv's flattened ones alike."""

from __future__ import annotations

from ray.tune import Checkpoint

from tune_cilp.results import TrialRecord, _unpacked

CONFIG = {"variant": "concat", "downsample": "maxpool", "packed_seeds": [51, 52], "epochs": 1}
SHARED = {"training_iteration": 1, "val_majority_rate": 0.9, "val_loss": 0.5}


def test_nested_and_flattened_rows_split_into_one_trial_per_seed() -> None:
    nested = {**SHARED, "packed": {"51": {"epoch": 1, "val_loss": 0.4}, "52": {"epoch": 1,
              "val_loss": 0.6}}}  # fmt: skip
    flat = {**SHARED, "packed/51/epoch": 2, "packed/51/val_loss": 0.3, "packed/52/epoch": 2,
            "packed/52/val_loss": 0.7}  # fmt: skip
    trial = TrialRecord("t1", dict(CONFIG), "TERMINATED", [nested, flat], Checkpoint("/x/ckpt"))
    first, second = _unpacked(trial)
    assert (first.trial_id, second.trial_id) == ("t1-seed51", "t1-seed52")
    assert first.config == {"variant": "concat", "downsample": "maxpool", "epochs": 1, "seed": 51}
    assert [row["val_loss"] for row in first.history] == [0.4, 0.3]  # the seed's, not the mean
    assert [row["val_loss"] for row in second.history] == [0.6, 0.7]
    assert all(row["val_majority_rate"] == 0.9 for row in first.history)  # the report's own
    assert not any(key.startswith("packed") for row in first.history for key in row)
    assert (first.checkpoint.path, second.checkpoint.path) == ("/x/ckpt/seed-51", "/x/ckpt/seed-52")


def test_a_trial_without_packed_seeds_is_itself() -> None:
    trial = TrialRecord("t2", {"variant": "concat", "seed": 51}, "TERMINATED", [SHARED])
    assert _unpacked(trial) == [trial]
