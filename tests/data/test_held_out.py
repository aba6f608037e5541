"""The optional held-out test split (--test-fraction): the mask (a seeded, class-stratified
share of the validation scenes, the same for every trial), its one rule for the fraction, the
trial config and the experiment identity that carry it only when set, and a real run whose
every trial records its test scenes' scores while a re-run with another fraction is refused."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from helpers import BASE

import analysis
from tune_cilp.core.errors import UserError, run_cli
from tune_cilp.core.predictions import PREDICTIONS_FILE, Predictions
from tune_cilp.data import CilpArrays, held_out_mask
from tune_cilp.experiment.identity import (
    META_FILE,
    differences,
    read_meta,
    write_meta,
)
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.run import main

BAD_FRACTIONS = [0, 1, 0.0, 1.0, -0.25, 1.5, math.nan, math.inf]


def _labels(cubes: int, spheres: int, train: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """`train` training scenes of each class, then the validation scenes, interleaved."""
    labels = np.array([0, 1] * train + [0] * cubes + [1] * spheres, dtype=np.int64)
    is_train = np.arange(len(labels)) < 2 * train
    return labels, is_train


# --- The mask ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cubes", "spheres", "fraction", "expected"),
    [
        (40, 4, 0.5, (20, 2)),  # each class its share: the rare class keeps its ratio
        (40, 4, 0.25, (10, 1)),
        (100, 10, 0.2, (20, 2)),
        (3, 2, 0.99, (2, 1)),  # all but one of each class at most: validation keeps both
    ],
)
def test_each_class_holds_out_its_share_of_validation(
    cubes: int, spheres: int, fraction: float, expected: tuple[int, int]
) -> None:
    labels, is_train = _labels(cubes, spheres)
    test = held_out_mask(labels, is_train, fraction)
    assert test.dtype == np.bool_ and test.shape == labels.shape
    assert not (test & is_train).any()  # the training split is untouched
    assert (int(np.sum(test & (labels == 0))), int(np.sum(test & (labels == 1)))) == expected
    kept = ~is_train & ~test
    assert set(labels[kept]) == {0, 1}  # validation keeps every class it had


def test_the_mask_is_seeded_and_deterministic() -> None:
    labels, is_train = _labels(40, 40)
    first = held_out_mask(labels, is_train, 0.5)
    assert np.array_equal(first, held_out_mask(labels, is_train, 0.5))
    assert np.array_equal(first, held_out_mask(labels, is_train, 0.5, seed=51))  # the data's
    assert not np.array_equal(first, held_out_mask(labels, is_train, 0.5, seed=52))
    # Drawn at random within each class, not the first scenes of each.
    assert not np.array_equal(np.flatnonzero(first & (labels == 0)), np.arange(20, 40))


def test_every_trial_holds_out_the_same_scenes(tiny_arrays: CilpArrays) -> None:
    # From the config's fraction and the data alone: the trial's training seed plays no part.
    masks = [TrainConfig(seed=s, test_fraction=0.5).held_out(tiny_arrays) for s in (1, 51, 52)]
    assert all(m is not None and np.array_equal(m, masks[0]) for m in masks)
    assert TrainConfig().held_out(tiny_arrays) is None


@pytest.mark.parametrize(
    ("cubes", "spheres", "fraction", "message"),
    [
        (40, 1, 0.5, "the test split would have no spheres scene (1 in validation)"),
        (40, 4, 0.1, "the test split would have no spheres scene (4 in validation)"),
        (1, 40, 0.5, "the test split would have no cubes scene (1 in validation)"),
        (0, 0, 0.5, "there are no validation scenes to hold out"),
    ],
)
def test_a_test_split_that_would_lack_a_class_is_refused(
    cubes: int, spheres: int, fraction: float, message: str
) -> None:
    labels, is_train = _labels(cubes, spheres)
    with pytest.raises(UserError, match=f"^test fraction {fraction:g}: ") as info:
        held_out_mask(labels, is_train, fraction)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_validation_split_of_one_class_holds_out_that_class() -> None:
    labels, is_train = _labels(0, 6)  # validation has spheres only: the test split as well
    test = held_out_mask(labels, is_train, 0.5)
    assert set(labels[test]) == {1} and int(test.sum()) == 3


@pytest.mark.parametrize("fraction", [*BAD_FRACTIONS, "0.5", True, None])
def test_the_fraction_is_strictly_between_0_and_1(fraction: Any) -> None:
    labels, is_train = _labels(4, 4)
    with pytest.raises(UserError, match="^test fraction: expected a number strictly between 0"):
        held_out_mask(labels, is_train, fraction)


# --- The trial config ----------------------------------------------------------------------


def test_the_config_carries_the_fraction_only_when_set() -> None:
    assert TrainConfig().test_fraction is None
    assert "test_fraction" not in TrainConfig().to_dict()  # a config as before the option
    older = TrainConfig().to_dict()
    assert TrainConfig.from_dict(older) == TrainConfig()
    cfg = TrainConfig.from_dict({"test_fraction": np.float64(0.5)})
    assert cfg.to_dict()["test_fraction"] == 0.5 and type(cfg.test_fraction) is float
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("fraction", [*BAD_FRACTIONS, "0.5", True])
def test_a_bad_fraction_in_a_config_is_refused(fraction: Any) -> None:
    with pytest.raises(UserError, match="^test_fraction: expected a number strictly between 0"):
        TrainConfig.from_dict({"test_fraction": fraction})


# --- The identity --------------------------------------------------------------------------

# The identity of tests/experiment/test_experiment_meta.py, which says what each field means.


def test_the_identity_records_the_fraction_only_when_set(tmp_path: Path) -> None:
    write_meta(str(tmp_path / "plain"), BASE)
    assert "test_fraction" not in json.loads((tmp_path / "plain" / META_FILE).read_text())
    assert read_meta(str(tmp_path / "plain")) == BASE
    held = dataclasses.replace(BASE, test_fraction=0.5)
    write_meta(str(tmp_path / "held"), held)
    assert json.loads((tmp_path / "held" / META_FILE).read_text())["test_fraction"] == 0.5
    assert read_meta(str(tmp_path / "held")) == held


@pytest.mark.parametrize(
    ("made", "wanted", "phrase"),
    [
        (None, 0.5, "--test-fraction: this experiment was made with no --test-fraction, not 0.5"),
        (0.5, None, "--test-fraction: this experiment was made with 0.5, not no --test-fraction"),
        (0.5, 0.25, "--test-fraction: this experiment was made with 0.5, not 0.25"),
    ],
)
def test_another_fraction_is_a_difference(
    made: float | None, wanted: float | None, phrase: str
) -> None:
    old = dataclasses.replace(BASE, test_fraction=made)
    assert differences(old, dataclasses.replace(BASE, test_fraction=wanted)) == [phrase]
    assert differences(old, dataclasses.replace(old, argv=["x"])) == []


def test_a_version_1_experiment_had_no_test_split(tmp_path: Path) -> None:
    old = {"space": "seed-ablation", "dataset": None, "data_dir": "/data", "smoke_test": False}
    (tmp_path / META_FILE).write_text(json.dumps({**old, "argv": []}))
    meta = read_meta(str(tmp_path))
    wanted = dataclasses.replace(BASE, dataset="synthetic:balanced")
    assert differences(meta, wanted) == []
    (line,) = differences(meta, dataclasses.replace(wanted, test_fraction=0.5))
    assert line.startswith("--test-fraction: this experiment was made with no --test-fraction")


# --- The command ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "1", "-0.5", "1.5", "nan", "inf", "half", ""])
def test_a_bad_fraction_on_the_command_line_is_one_line(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--storage-path", str(tmp_path), "--test-fraction", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--test-fraction" in err, err
    assert not ray.is_initialized() and not list(tmp_path.iterdir())


def test_a_fraction_the_data_cannot_split_is_one_line_before_ray_starts(
    tiny_raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tiny set's validation has 4 scenes of each class: a tenth of 4 rounds to none.
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            main,
            ["--dataset", str(tiny_raw), "--storage-path", str(tmp_path)]
            + ["--test-fraction", "0.1"],
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --test-fraction 0.1: the test split would have no cubes scene (4 in "
        "validation); choose a larger fraction or more data\n"
    )
    assert not ray.is_initialized() and not (tmp_path / "seed-ablation").exists()


def _run(tiny_raw: Path, storage: Path, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["--dataset", str(tiny_raw), "--storage-path", str(storage), "--wandb", "disabled"]
            + ["--smoke-test", *extra]
        )
    return code, out.getvalue()


def _records(experiment: Path) -> list[Predictions]:
    paths = sorted(experiment.glob(f"*/checkpoint_*/{PREDICTIONS_FILE}"))
    return [Predictions.from_json(path.read_bytes(), source=str(path)) for path in paths]


@pytest.mark.slow
def test_a_run_with_a_test_fraction_records_every_trials_test_scenes(
    tiny_raw: Path, tmp_path: Path, restore_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        code, output = _run(tiny_raw, tmp_path, "--test-fraction", "0.5")
        assert code == 0, output[-3000:]
        experiment = tmp_path / "seed-ablation"
        assert json.loads((experiment / META_FILE).read_text())["test_fraction"] == 0.5
        configs = [json.loads(p.read_text()) for p in experiment.glob("*/params.json")]
        assert len(configs) == 2 and all(c["test_fraction"] == 0.5 for c in configs)
        records = _records(experiment)
        assert len(records) == 2  # two trials, one epoch each
        for record in records:
            assert record.test is not None and record.best is not None
            assert not set(record.test.ids.tolist()) & set(record.ids.tolist())
            assert record.test.epoch == record.best.epoch == 1
        # Every trial held out the same scenes (the smoke test's 8 validation scenes: 2 + 2).
        assert len({tuple(r.test.ids.tolist()) for r in records if r.test is not None}) == 1
        assert sorted(records[0].test.labels.tolist()) == [0, 0, 1, 1]
        # The table the run printed, and the analysis of the folder, come from the test scenes.
        flat = " ".join(output.split())
        assert "on 2 cubes and 2 spheres (held-out test)" in flat
        assert "the held-out test scores (epochs chosen on validation)" in flat
        report = " ".join(analysis.report(str(experiment)).split())
        assert "(held-out test)" in report and "Verdict: " in report

        # --replicate applies it too: its own fraction, not the source's.
        source = str(experiment)
        code, output = _run(
            tiny_raw, tmp_path, "--replicate", source, "--seeds", "1,2", "--test-fraction", "0.25"
        )
        assert code == 0, output[-3000:]
        replicate = tmp_path / "seed-ablation-replicate"
        assert json.loads((replicate / META_FILE).read_text())["test_fraction"] == 0.25
        configs = [json.loads(p.read_text()) for p in replicate.glob("*/params.json")]
        assert len(configs) == 4 and all(c["test_fraction"] == 0.25 for c in configs)
        records = _records(replicate)
        assert len(records) == 4  # one of each class's 4 validation scenes held out
        assert all(r.test is not None and r.test.labels.tolist() == [0, 1] for r in records)
    finally:
        ray.shutdown()

    # A re-run with another fraction (or none) is refused in one line before anything starts.
    capsys.readouterr()  # the trials' log lines
    for extra in (["--test-fraction", "0.25"], []):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(
                main,
                ["--dataset", str(tiny_raw), "--storage-path", str(tmp_path)]
                + ["--smoke-test", *extra],
            )
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--test-fraction: this experiment was made with 0.5" in err
        assert not ray.is_initialized()
