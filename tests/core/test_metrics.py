"""The metric schema and the classification metrics, checked against scikit-learn."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from tune_cilp.core.metrics import EPOCH, EPOCH_KEYS, SELECT, STATUS_COLUMNS, TRIAL, binary_metrics


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


def test_schema_names_each_metric_once() -> None:
    for metrics in (EPOCH, TRIAL):
        keys = [m.key for m in metrics]
        assert len(keys) == len(set(keys))
        assert all(m.goal in ("", "min", "max") for m in metrics)
    assert EPOCH_KEYS[0] == "epoch" and SELECT in EPOCH_KEYS
    assert set(STATUS_COLUMNS) - {"training_iteration"} <= set(EPOCH_KEYS)


def test_brier_score_matches_sklearn_and_stays_bounded() -> None:
    from sklearn.metrics import brier_score_loss

    from tune_cilp.core.metrics import TRIAL_METRICS, brier_score

    rng = np.random.default_rng(3)
    proba, actual = rng.uniform(size=50), rng.uniform(size=50) < 0.2
    assert brier_score(proba, actual) == pytest.approx(brier_score_loss(actual, proba))
    assert brier_score(np.array([1.0, 0.0]), np.array([False, True])) == 1.0  # worst possible
    assert TRIAL_METRICS["val_brier"].bounds == (0.0, 1.0)
