"""Per-scene validation scores (tune_cilp.core.predictions): the JSON record reads back
bit-equal and refuses damage in one line; the Trainer's record is the validation split's
scenes and the best model's scores, from which the reported metrics recompute; records pair
by scene id across seeds and survive a resume; with a test fraction, the held-out test scenes
leave validation and are scored at the best epoch only; ROC AUC / AP agree with scikit-learn."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from tune_cilp.core.checkpoint import load_checkpoint, save_checkpoint
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import ranking_metrics
from tune_cilp.core.predictions import (
    FORMAT,
    FORMAT_WITHOUT_TEST,
    PREDICTIONS_FILE,
    HeldOut,
    Predictions,
    Scores,
    write_predictions,
)
from tune_cilp.data import CilpArrays
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer, predict_proba
from tune_cilp.training.device import configure_process

FAST = {"variant": "early", "downsample": "stride"}  # the cheapest model: ~0.1 GFLOP / sample
SOURCE = "exp/trial_1/checkpoint_000001/predictions.json"


@pytest.fixture(autouse=True)
def two_threads() -> None:
    configure_process(threads=2)  # what the trainable does with the CPUs it was granted


def _train(data: CilpArrays, epochs: int, **options: Any) -> Trainer:
    trainer = Trainer(TrainConfig(**FAST, epochs=epochs, **options), data)
    while not trainer.done:
        trainer.run_epoch()
    return trainer


def _same_scores(a: Scores | None, b: Scores | None) -> bool:
    if a is None or b is None:
        return a is b
    return (
        a.epoch == b.epoch and a.proba.dtype == b.proba.dtype and np.array_equal(a.proba, b.proba)
    )


def _same_held_out(a: HeldOut | None, b: HeldOut | None) -> bool:
    if a is None or b is None:
        return a is b
    return (
        np.array_equal(a.ids, b.ids)
        and np.array_equal(a.labels, b.labels)
        and a.labels.dtype == b.labels.dtype
        and _same_scores(Scores(a.epoch, a.proba), Scores(b.epoch, b.proba))
    )


def _same_predictions(a: Predictions, b: Predictions) -> bool:
    return (
        np.array_equal(a.ids, b.ids)
        and np.array_equal(a.labels, b.labels)
        and _same_scores(a.best, b.best)
        and _same_scores(a.last, b.last)
        and _same_held_out(a.test, b.test)
    )


# --- The JSON record ---------------------------------------------------------------------------


# Values a float32 or a short decimal would change: the extremes, the smallest normal float64
# (a subnormal reads back as 0 under configure_process's flush-to-zero, in a trial as here), the
# float64s just below 1 and just above 0.5, and arbitrary ones.
EDGE = [0.0, 1.0, 2.0**-1022, 1 - 2**-53, 0.5 + 2**-52, 0.1]


def _record(best: bool = True, test: bool = False) -> Predictions:
    rng = np.random.default_rng(0)
    ids = np.array([f"{c}/{i:04d}" for c in ("cubes", "spheres") for i in range(6)])
    labels = np.array([0] * 6 + [1] * 6, dtype=np.int64)
    last = np.array([*EDGE, *rng.random(6)], dtype=np.float64)
    best_scores = Scores(3, rng.random(12)) if best else None
    held_out = None
    if test:  # scenes 6 and 7 of each class, which validation does not have
        test_ids = np.array([f"{c}/{i:04d}" for c in ("cubes", "spheres") for i in (6, 7)])
        test_labels = np.array([0, 0, 1, 1], dtype=np.int64)
        held_out = HeldOut(3, test_ids, test_labels, np.array(EDGE[1:5], dtype=np.float64))
    return Predictions(ids, labels, best_scores, Scores(7, last), held_out)


@pytest.mark.parametrize(("best", "test"), [(True, False), (False, False), (True, True)])
def test_json_round_trip_is_bit_equal(best: bool, test: bool, tmp_path: Path) -> None:
    record = _record(best, test)
    back = Predictions.from_json(record.to_json())
    assert _same_predictions(back, record)
    assert back.labels.dtype == np.int64 and back.last.proba.dtype == np.float64
    assert back.last.proba.tobytes() == record.last.proba.tobytes()  # bit-equal, not just ==
    if test:
        assert back.test is not None and record.test is not None
        assert back.test.proba.tobytes() == record.test.proba.tobytes()
        assert back.test.labels.dtype == np.int64
        assert back.test.ids.tolist() == record.test.ids.tolist()
    # As the trial writes it, read back as bytes (how an analysis reads a file).
    path = write_predictions(tmp_path, record)
    assert Path(path) == tmp_path / PREDICTIONS_FILE
    assert _same_predictions(Predictions.from_json(Path(path).read_bytes()), record)
    assert Predictions.from_json(Path(path).read_bytes()).to_json() == record.to_json()


def test_a_record_without_a_test_block_is_written_as_before() -> None:
    # Format 1, no "test" key: what a reader older than the test split reads; with a test block
    # the record is format 2, which that reader refuses rather than silently ignore the block.
    plain, held = json.loads(_record().to_json()), json.loads(_record(test=True).to_json())
    assert list(plain) == ["format", "ids", "labels", "best", "last"]
    assert plain["format"] == FORMAT_WITHOUT_TEST == 1
    assert held["format"] == FORMAT == 2 and list(held)[-1] == "test"
    assert list(held["test"]) == ["epoch", "ids", "labels", "proba"]


def _valid() -> dict[str, Any]:
    return json.loads(_record().to_json())


def _valid_with_test() -> dict[str, Any]:
    return json.loads(_record(test=True).to_json())


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return data

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda data: {k: v for k, v in data.items() if k != key}


DAMAGE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "newer format": _set(("format",), FORMAT + 1),
    "format true": _set(("format",), True),
    "a test block in format 1": lambda data: {**data, "test": _valid_with_test()["test"]},
    "no format": _drop("format"),
    "not an object": lambda data: [data],
    "no ids": _drop("ids"),
    "no labels": _drop("labels"),
    "no best": _drop("best"),
    "no last": _drop("last"),
    "last null": _set(("last",), None),
    "no proba": lambda data: {**data, "last": {"epoch": 1}},
    "no epoch": lambda data: {**data, "last": {"proba": data["last"]["proba"]}},
    "label 2": lambda data: _set(("labels",), [2, *data["labels"][1:]])(data),
    "label -1": lambda data: _set(("labels",), [-1, *data["labels"][1:]])(data),
    # NumPy would read these as the labels 0 and 1: refused as what they are.
    "label 0.5": lambda data: _set(("labels",), [0.5, *data["labels"][1:]])(data),
    "label true": lambda data: _set(("labels",), [True, *data["labels"][1:]])(data),
    "label text": lambda data: _set(("labels",), ["1", *data["labels"][1:]])(data),
    "labels a number": _set(("labels",), 1),
    "one label short": lambda data: _set(("labels",), data["labels"][:-1])(data),
    "one id short": lambda data: _set(("ids",), data["ids"][:-1])(data),
    "one score short": lambda data: _set(("last", "proba"), data["last"]["proba"][:-1])(data),
    "one best score extra": lambda data: _set(("best", "proba"), [*data["best"]["proba"], 0.5])(
        data
    ),
    "repeated id": lambda data: _set(("ids",), [data["ids"][1], *data["ids"][1:]])(data),
    "proba above 1": lambda data: _set(("last", "proba"), [1.5, *data["last"]["proba"][1:]])(data),
    "proba below 0": lambda data: _set(("best", "proba"), [-1e-9, *data["best"]["proba"][1:]])(
        data
    ),
    "proba NaN": lambda data: _set(("last", "proba"), [math.nan, *data["last"]["proba"][1:]])(data),
    "epoch 0": _set(("last", "epoch"), 0),
    "epoch negative": _set(("best", "epoch"), -3),
    "epoch float": _set(("last", "epoch"), 1.0),
    "epoch true": _set(("last", "epoch"), True),
    "epoch text": _set(("best", "epoch"), "3"),
}


def _in_test(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda data: {**data, "test": change(dict(data["test"]))}


def _first(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return _in_test(lambda test: {**test, key: [value, *test[key][1:]]})


# Damage to a record with a test block (format 2): the block is checked as strictly as the rest.
TEST_DAMAGE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "format 2 without its test block": _drop("test"),
    "format 1 with its test block": _set(("format",), FORMAT_WITHOUT_TEST),
    "test null": _set(("test",), None),
    "test a list": lambda data: {**data, "test": [data["test"]]},
    "test no ids": _in_test(lambda test: {k: v for k, v in test.items() if k != "ids"}),
    "test no proba": _in_test(lambda test: {k: v for k, v in test.items() if k != "proba"}),
    "test no epoch": _in_test(lambda test: {k: v for k, v in test.items() if k != "epoch"}),
    "test epoch not the best": _set(("test", "epoch"), 7),
    "test epoch 0": _set(("test", "epoch"), 0),
    "test epoch float": _set(("test", "epoch"), 3.0),
    "test epoch true": _set(("test", "epoch"), True),
    "test without a best epoch": _set(("best",), None),
    "test empty": _in_test(lambda test: {**test, "ids": [], "labels": [], "proba": []}),
    "test ids repeat": _in_test(lambda test: {**test, "ids": [test["ids"][1], *test["ids"][1:]]}),
    "test id a validation id": _first("ids", "cubes/0000"),
    "test label 2": _first("labels", 2),
    "test label 0.5": _first("labels", 0.5),
    "test label true": _first("labels", True),
    "test one label short": _in_test(lambda test: {**test, "labels": test["labels"][:-1]}),
    "test one score short": _in_test(lambda test: {**test, "proba": test["proba"][:-1]}),
    "test one score extra": _in_test(lambda test: {**test, "proba": [*test["proba"], 0.5]}),
    "test proba above 1": _first("proba", 1 + 2**-52),
    "test proba NaN": _first("proba", math.nan),
}
CASES = {
    **{name: (_valid, change) for name, change in DAMAGE.items()},
    **{name: (_valid_with_test, change) for name, change in TEST_DAMAGE.items()},
}


def test_each_damage_has_its_own_name() -> None:
    assert len(CASES) == len(DAMAGE) + len(TEST_DAMAGE)


@pytest.mark.parametrize("damage", sorted(CASES))
def test_a_damaged_record_is_one_line_naming_its_source(damage: str) -> None:
    valid, change = CASES[damage]
    text = json.dumps(change(copy.deepcopy(valid())))
    with pytest.raises(UserError) as info:
        Predictions.from_json(text, source=SOURCE)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: not a valid predictions record (") and "\n" not in message


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"\xff\xfe\x00garbage", b'{"format": 1, "ids": [', b"null"]
)
def test_bytes_that_are_no_json_record_are_one_line(raw: bytes) -> None:
    with pytest.raises(UserError, match=f"^{SOURCE}: not a valid predictions record") as info:
        Predictions.from_json(raw, source=SOURCE)
    assert "\n" not in str(info.value)


def test_the_default_source_is_the_file_name() -> None:
    with pytest.raises(UserError, match=f"^{PREDICTIONS_FILE}: "):
        Predictions.from_json("[]")


# --- The Trainer's record ----------------------------------------------------------------------


def test_trainer_records_the_best_models_validation_scores(tiny_arrays: CilpArrays) -> None:
    # fp32: predict_proba computes in fp32, so the two agree to float rounding.
    trainer = _train(tiny_arrays, 2, precision="fp32")
    record = trainer.predictions()
    assert record is not None
    val = tiny_arrays.validation
    assert record.ids.tolist() == val.ids.tolist()  # the stable keys, "cubes/0042"
    assert all(i.split("/")[0] in ("cubes", "spheres") for i in record.ids)
    assert np.array_equal(record.labels, val.labels) and record.labels.dtype == np.int64
    assert record.best is not None and record.best.epoch == trainer.best_epoch
    assert record.last.epoch == 2
    assert record.best.proba.dtype == np.float64

    best_proba = predict_proba(trainer.best_model(), val.rgb, val.xyza)
    np.testing.assert_allclose(record.best.proba, best_proba, rtol=0, atol=1e-6)
    last_proba = predict_proba(trainer.model, val.rgb, val.xyza)
    np.testing.assert_allclose(record.last.proba, last_proba, rtol=0, atol=1e-6)

    # The reported metrics of the best epoch recompute from the record alone (what the
    # analysis relies on when it resamples scenes).
    reported = trainer.history[trainer.best_epoch - 1]
    assert reported["epoch"] == record.best.epoch
    assert reported["val_roc_auc"] == roc_auc_score(record.labels, record.best.proba)
    assert reported["val_average_precision"] == average_precision_score(
        record.labels, record.best.proba
    )
    # val_loss is BCE of the float32 logits; the record's float64 scores give it to rounding.
    bce = log_loss(record.labels, record.best.proba, labels=[0, 1])
    assert math.isclose(reported["val_loss"], bce, rel_tol=1e-5)


def test_records_pair_by_scene_id_across_seeds(tiny_arrays: CilpArrays) -> None:
    first, second = (_train(tiny_arrays, 1, seed=s).predictions() for s in (51, 52))
    assert first is not None and second is not None
    assert first.ids.tolist() == second.ids.tolist()
    assert np.array_equal(first.labels, second.labels)
    assert not np.array_equal(first.last.proba, second.last.proba)  # two models, really


@pytest.mark.parametrize("test_fraction", [None, 0.5])
def test_a_resumed_run_records_what_a_straight_run_does(
    tiny_arrays: CilpArrays, tmp_path: Path, test_fraction: float | None
) -> None:
    straight = _train(tiny_arrays, 2, test_fraction=test_fraction)

    cfg = TrainConfig(**FAST, epochs=2, test_fraction=test_fraction)
    interrupted = Trainer(cfg, tiny_arrays)
    interrupted.run_epoch()
    save_checkpoint(tmp_path / "state.pt", interrupted.state_dict())
    resumed = Trainer(cfg, tiny_arrays)
    resumed.load_state_dict(load_checkpoint(tmp_path / "state.pt"))
    # The record restored with the state: epoch 1's scores, before any more training.
    restored = resumed.predictions()
    assert restored is not None and restored.last.epoch == 1
    assert _same_predictions(restored, interrupted.predictions())
    resumed.run_epoch()

    a, b = resumed.predictions(), straight.predictions()
    assert a is not None and b is not None and _same_predictions(a, b)
    assert a.best is not None and a.best.epoch == straight.best_epoch
    assert a.last.epoch == 2
    # The test block travels with the checkpoint, like the rest of the record.
    assert (a.test is None) == (test_fraction is None) == (restored.test is None)


# --- A held-out test split ---------------------------------------------------------------------


def test_the_test_split_leaves_validation_and_is_scored_at_the_best_epoch(
    tiny_arrays: CilpArrays,
) -> None:
    trainer = _train(tiny_arrays, 3, precision="fp32", test_fraction=0.5)
    record = trainer.predictions()
    assert record is not None and record.best is not None and record.test is not None
    test, val = record.test, tiny_arrays.validation
    # Half of each class's validation scenes, out of validation; together, validation as it was.
    assert not set(test.ids.tolist()) & set(record.ids.tolist())
    assert sorted([*test.ids, *record.ids]) == sorted(val.ids)
    assert test.labels.tolist() == [0, 0, 1, 1] and test.labels.dtype == np.int64
    assert test.epoch == record.best.epoch == trainer.best_epoch
    # Scored by the best model (validation's choice), in the data's order.
    scenes = tiny_arrays.subset(np.isin(tiny_arrays.ids, test.ids))
    assert scenes.ids.tolist() == test.ids.tolist() and not scenes.is_train.any()
    best_proba = predict_proba(trainer.best_model(), scenes.rgb, scenes.xyza)
    np.testing.assert_allclose(test.proba, best_proba, rtol=0, atol=1e-6)
    # No test metric is reported; the validation metrics are of validation less the test scenes.
    assert all(not key.startswith("test") for row in trainer.history for key in row)
    reported = trainer.history[trainer.best_epoch - 1]
    assert reported["val_roc_auc"] == roc_auc_score(record.labels, record.best.proba)
    bce = log_loss(record.labels, record.best.proba, labels=[0, 1])
    assert math.isclose(reported["val_loss"], bce, rel_tol=1e-5)
    assert Predictions.from_json(record.to_json()).test is not None  # a valid record


def test_a_test_fraction_leaves_training_as_it_was(tiny_arrays: CilpArrays) -> None:
    plain, held = _train(tiny_arrays, 2), _train(tiny_arrays, 2, test_fraction=0.5)
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in held.history]
    plain_state, held_state = plain.model.state_dict(), held.model.state_dict()
    assert all(torch.equal(plain_state[k], held_state[k]) for k in plain_state)
    record = plain.predictions()
    assert record is not None and record.test is None  # and no test split: the record as before


# --- ROC AUC and average precision -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_ranking_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    actual = rng.random(n) < rng.random()
    actual[:2] = [False, True]  # both classes: otherwise neither metric is defined
    scores = rng.random(n)
    if seed % 2:
        scores = np.round(scores, 1)  # ties, which both metrics must handle as sklearn does
    assert ranking_metrics(scores, actual) == {
        "val_roc_auc": roc_auc_score(actual, scores),
        "val_average_precision": average_precision_score(actual, scores),
    }


@pytest.mark.parametrize("label", [False, True])
def test_ranking_metrics_are_nan_for_one_class(label: bool) -> None:
    metrics = ranking_metrics(np.linspace(0, 1, 5), np.full(5, label))
    assert set(metrics) == {"val_roc_auc", "val_average_precision"}
    assert all(math.isnan(v) for v in metrics.values())
