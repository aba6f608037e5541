"""The metric schema: the registry's invariants (one record per metric, each computed one way,
its bounds held, what a trainer reports and what the analysis computes from the same entry),
and the classification metrics checked against scikit-learn."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from tune_cilp.core import metrics
from tune_cilp.core.metrics import (
    AT_BEST_EPOCH,
    CLASSIFICATION,
    EPOCH,
    EPOCH_KEYS,
    EPOCH_METRICS,
    SCENE_METRICS,
    SELECT,
    STATUS_COLUMNS,
    TRIAL_METRICS,
    UNIT,
    Metric,
    binary_metrics,
    classification_metrics,
    trial_metrics,
)
from tune_cilp.core.scoring import ScoredScenes


@contextlib.contextmanager
def _quiet() -> Iterator[None]:  # sklearn warns on single-class inputs; its value is checked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reference(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    with _quiet():
        return {
            "val_accuracy": accuracy_score(actual, predicted),
            "val_balanced_accuracy": balanced_accuracy_score(actual, predicted),
            "val_f1": f1_score(actual, predicted, zero_division=0),
        }


CASES = {
    "one class only, all right": ([0, 0, 0, 0], [0, 0, 0, 0]),
    "one class only, some wrong": ([0, 1, 0, 1], [0, 0, 0, 0]),
    "positives only": ([1, 0, 1, 1], [1, 1, 1, 1]),
    "no positive prediction": ([0, 0, 0, 0, 0], [0, 1, 0, 1, 0]),
    "all positive predictions": ([1, 1, 1, 1], [0, 1, 0, 0]),
    "perfect": ([0, 1, 1, 0], [0, 1, 1, 0]),
    "all wrong": ([1, 0, 0, 1], [0, 1, 1, 0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_degenerate_cases_match_sklearn(case: str) -> None:
    predicted, actual = (np.array(x, bool) for x in CASES[case])
    assert binary_metrics(predicted, actual) == pytest.approx(reference(predicted, actual))


@pytest.mark.parametrize("seed", range(20))
def test_random_cases_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    actual = rng.random(n) < rng.random()  # class balance varies from case to case
    predicted = rng.random(n) < rng.random()
    assert binary_metrics(predicted, actual) == pytest.approx(reference(predicted, actual))


@pytest.mark.parametrize("seed", range(20))
def test_threshold_metrics_are_the_integer_count_formulas_bit_for_bit(seed: int) -> None:
    # What a trainer has always reported, from integer counts: the registry's weighted functions
    # at unit weights give the same floats, not merely close ones.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    actual, predicted = rng.random(n) < rng.random(), rng.random(n) < rng.random()
    tp, fp = int(np.sum(predicted & actual)), int(np.sum(predicted & ~actual))
    fn, tn = int(np.sum(~predicted & actual)), int(np.sum(~predicted & ~actual))
    recalls = [hits / total for hits, total in ((tp, tp + fn), (tn, tn + fp)) if total]
    assert binary_metrics(predicted, actual) == {
        "val_accuracy": (tp + tn) / n,
        "val_balanced_accuracy": float(np.mean(recalls)),
        "val_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


def test_the_registry_names_each_metric_once_and_computes_each_one_way() -> None:
    for group in (EPOCH, trial_metrics()):
        keys = [m.key for m in group]
        assert len(keys) == len(set(keys))
        assert all(m.goal in ("", "min", "max") for m in group)
    labels = [m.label for m in trial_metrics()]
    assert len(labels) == len(set(labels))  # a table's rows tell apart
    for m in CLASSIFICATION:
        assert (m.term is None) != (m.scene is None), m.key  # a term or a function, not both
        assert m.goal in ("min", "max"), m.key  # a quality measure ranks variants
        low, high = m.bounds
        assert low < high and not (math.isinf(low) and math.isinf(high)), m.key
        assert format(0.5, m.fmt)  # a number format
    columns = [m.ranking_column for m in CLASSIFICATION if m.ranking_column]
    assert sorted(columns) == list(range(1, len(columns) + 1))  # 1, 2, ...: no gap, no tie
    assert EPOCH_KEYS[0] == "epoch" and SELECT in EPOCH_KEYS
    assert set(STATUS_COLUMNS) - {"training_iteration"} <= set(EPOCH_KEYS)


def test_every_view_is_read_from_the_same_entries() -> None:
    keys = tuple(m.key for m in CLASSIFICATION)
    assert keys == SCENE_METRICS and tuple(k for k in keys if k != SELECT) == AT_BEST_EPOCH
    assert EPOCH_KEYS[2 : 2 + len(keys)] == keys  # reported after epoch and train_loss
    for m in CLASSIFICATION:  # one record: what the trainer reports is what the tables show
        assert EPOCH_METRICS[m.key] is m and TRIAL_METRICS[m.key] is m


def test_the_analysis_computes_every_registry_metric() -> None:
    from analysis.bootstrap import scene_metrics, stratified_counts

    labels = np.array([0] * 20 + [1] * 6)
    proba = np.random.default_rng(0).uniform(size=len(labels))
    counts = stratified_counts(labels, replicates=50)
    out = scene_metrics(proba, labels, counts)
    assert list(out) == list(SCENE_METRICS)
    for m in CLASSIFICATION:
        values = out[m.key]
        assert values.shape == (50,) and np.all(np.isfinite(values)), m.key


@pytest.mark.parametrize("seed", range(10))
def test_values_stay_inside_their_bounds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    pos = rng.random(n) < rng.random()
    proba = np.clip(rng.random(n) ** rng.uniform(0.1, 10), 0, 1)
    counts = rng.integers(0, 3, size=(20, n)).astype(float)
    counts[0] = 1.0
    scores = ScoredScenes(proba, pos, counts)
    for m in CLASSIFICATION:
        values = m.values(scores)
        low, high = m.bounds
        finite = values[np.isfinite(values)]
        assert np.all((finite >= low - 1e-12) & (finite <= high + 1e-12)), m.key


@pytest.mark.parametrize("seed", range(10))
def test_the_trainers_numbers_are_the_analysis_numbers(seed: int) -> None:
    # Where a trainer computes a metric its own way (Metric.epoch: scikit-learn, numpy's mean),
    # it is the same number as the registry's function at unit weights, up to rounding.
    from analysis.bootstrap import scene_metrics

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    labels = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(int)
    proba = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties for the rank metrics
    reported = classification_metrics(proba, labels == 1)
    assert list(reported) == list(SCENE_METRICS)  # the registry's order
    ours = scene_metrics(proba, labels, np.ones((1, n)))
    for key, value in reported.items():
        assert value == pytest.approx(float(ours[key][0]), abs=1e-12, nan_ok=True), key


def test_the_trainers_loss_stands_as_given() -> None:
    proba, actual = np.array([0.2, 0.9, 0.6]), np.array([False, True, False])
    reported = classification_metrics(proba, actual, np.array([False, True, True]), val_loss=7.0)
    assert reported["val_loss"] == 7.0
    assert reported["val_accuracy"] == pytest.approx(2 / 3)  # the predictions passed, at 0.5


def test_a_changed_registry_is_seen_by_every_view(monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = Metric("val_scratch", "Scratch", ".3f", "min", bounds=UNIT,
                     term=lambda proba, pos: np.abs(proba - pos))  # fmt: skip
    monkeypatch.setattr(metrics, "CLASSIFICATION", (*CLASSIFICATION, scratch))
    assert SCENE_METRICS[-1] == AT_BEST_EPOCH[-1] == "val_scratch"
    assert TRIAL_METRICS["val_scratch"] is scratch and EPOCH_METRICS["val_scratch"] is scratch
    assert EPOCH_KEYS.index("val_scratch") == EPOCH_KEYS.index("val_brier") + 1
    reported = classification_metrics(np.array([0.2, 0.9]), np.array([False, True]))
    assert reported["val_scratch"] == pytest.approx(0.15)
    monkeypatch.undo()
    assert "val_scratch" not in SCENE_METRICS and "val_scratch" not in TRIAL_METRICS


def test_brier_score_matches_sklearn_and_stays_bounded() -> None:
    from sklearn.metrics import brier_score_loss

    from tune_cilp.core.metrics import brier_score

    rng = np.random.default_rng(3)
    proba, actual = rng.uniform(size=50), rng.uniform(size=50) < 0.2
    assert brier_score(proba, actual) == pytest.approx(brier_score_loss(actual, proba))
    assert brier_score(np.array([1.0, 0.0]), np.array([False, True])) == 1.0  # worst possible
    assert TRIAL_METRICS["val_brier"].bounds == (0.0, 1.0)
