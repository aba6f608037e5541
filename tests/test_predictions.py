"""Per-scene validation scores (tune_cilp.core.predictions): the JSON record reads back
bit-equal and refuses damage in one line; the Trainer's record is the validation split's
scenes and the best model's scores, from which the reported metrics recompute; records pair
by scene id across seeds and survive a resume; ROC AUC / AP agree with scikit-learn."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from tune_cilp.core.checkpoint import load_checkpoint, save_checkpoint
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import ranking_metrics
from tune_cilp.core.predictions import (
    PREDICTIONS_FILE,
    Predictions,
    Scores,
    write_predictions,
)
from tune_cilp.data import CilpArrays
from tune_cilp.training.fusion import TrainConfig, Trainer, configure_process, predict_proba

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


def _same_predictions(a: Predictions, b: Predictions) -> bool:
    return (
        np.array_equal(a.ids, b.ids)
        and np.array_equal(a.labels, b.labels)
        and _same_scores(a.best, b.best)
        and _same_scores(a.last, b.last)
    )


# --- The JSON record ---------------------------------------------------------------------------


def _record(best: bool = True) -> Predictions:
    rng = np.random.default_rng(0)
    ids = np.array([f"{c}/{i:04d}" for c in ("cubes", "spheres") for i in range(6)])
    labels = np.array([0] * 6 + [1] * 6, dtype=np.int64)
    # Values a float32 or a short decimal would change: the extremes, the smallest normal
    # float64 (a subnormal reads back as 0 under configure_process's flush-to-zero, in a trial
    # as here), the float64s just below 1 and just above 0.5, and arbitrary ones.
    edge = [0.0, 1.0, 2.0**-1022, 1 - 2**-53, 0.5 + 2**-52, 0.1]
    last = np.array([*edge, *rng.random(6)], dtype=np.float64)
    best_scores = Scores(3, rng.random(12)) if best else None
    return Predictions(ids, labels, best_scores, Scores(7, last))


@pytest.mark.parametrize("best", [True, False])
def test_json_round_trip_is_bit_equal(best: bool, tmp_path: Path) -> None:
    record = _record(best)
    back = Predictions.from_json(record.to_json())
    assert _same_predictions(back, record)
    assert back.labels.dtype == np.int64 and back.last.proba.dtype == np.float64
    assert back.last.proba.tobytes() == record.last.proba.tobytes()  # bit-equal, not just ==
    # As the trial writes it, read back as bytes (how an analysis reads a file).
    path = write_predictions(tmp_path, record)
    assert Path(path) == tmp_path / PREDICTIONS_FILE
    assert _same_predictions(Predictions.from_json(Path(path).read_bytes()), record)


def _valid() -> dict[str, Any]:
    return json.loads(_record().to_json())


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
    "newer format": _set(("format",), 2),
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


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_record_is_one_line_naming_its_source(damage: str) -> None:
    text = json.dumps(DAMAGE[damage](copy.deepcopy(_valid())))
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


def test_a_resumed_run_records_what_a_straight_run_does(
    tiny_arrays: CilpArrays, tmp_path: Path
) -> None:
    straight = _train(tiny_arrays, 2)

    interrupted = Trainer(TrainConfig(**FAST, epochs=2), tiny_arrays)
    interrupted.run_epoch()
    save_checkpoint(tmp_path / "state.pt", interrupted.state_dict())
    resumed = Trainer(TrainConfig(**FAST, epochs=2), tiny_arrays)
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
