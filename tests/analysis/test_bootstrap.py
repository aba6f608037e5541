"""The weighted per-scene metrics (analysis/bootstrap.py) against the well-kept libraries and
hand-worked cases: weighted metrics = sklearn's with sample weights, stratified draws keep the
class sizes, McNemar and Holm. The inference built on them: tests/analysis/test_inference.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)
from statsmodels.stats.multitest import multipletests

from analysis import bootstrap
from tune_cilp.core.metrics import SCENE_METRICS

RNG = np.random.default_rng(7)
LABELS = np.array([0] * 40 + [1] * 6)
# Scores with ties (rounded) so the tie handling of ROC AUC and AP is exercised too.
PROBA = np.round(np.clip(RNG.normal(0.3 + 0.4 * LABELS, 0.2), 0.001, 0.999), 1)


def _sklearn(proba: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    predicted = (proba >= 0.5).astype(int)
    w = {"sample_weight": weights}
    return {
        "val_loss": log_loss(labels, proba, **w),
        "val_accuracy": accuracy_score(labels, predicted, **w),
        "val_balanced_accuracy": balanced_accuracy_score(labels, predicted, **w),
        "val_f1": f1_score(labels, predicted, zero_division=0.0, **w),
        "val_roc_auc": roc_auc_score(labels, proba, **w),
        "val_average_precision": average_precision_score(labels, proba, **w),
        "val_brier": brier_score_loss(labels, proba, **w),
    }


def test_weighted_metrics_equal_sklearn_with_sample_weights() -> None:
    counts = bootstrap.stratified_counts(LABELS, replicates=25, seed=3)
    ours = bootstrap.scene_metrics(PROBA, LABELS, counts)
    assert set(ours) == set(SCENE_METRICS)
    for r in range(len(counts)):
        expected = _sklearn(PROBA, LABELS, counts[r])
        for metric, value in expected.items():
            assert ours[metric][r] == pytest.approx(value, abs=1e-12), (metric, r)


def test_a_multiplicity_is_the_same_as_repeating_the_scene() -> None:
    counts = np.array([[2.0] + [1.0] * 39 + [3.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    ours = bootstrap.scene_metrics(PROBA, LABELS, counts)
    repeated = np.repeat(np.arange(len(LABELS)), counts[0].astype(int))
    ones = np.ones(len(repeated))
    expected = _sklearn(PROBA[repeated], LABELS[repeated], ones)
    for metric, value in expected.items():
        assert ours[metric][0] == pytest.approx(value, abs=1e-12), metric


def test_one_class_has_no_ranking_metrics() -> None:
    counts = np.zeros((1, len(LABELS)))
    counts[0, :40] = 1.0  # cubes only
    ours = bootstrap.scene_metrics(PROBA, LABELS, counts)
    assert math.isnan(ours["val_roc_auc"][0]) and math.isnan(ours["val_average_precision"][0])
    assert ours["val_accuracy"][0] == pytest.approx(np.mean(PROBA[:40] < 0.5))


def test_saturated_scores_give_a_finite_loss() -> None:
    ours = bootstrap.scene_metrics(np.array([0.0, 1.0]), np.array([1, 0]), np.ones((1, 2)))
    assert math.isfinite(ours["val_loss"][0]) and ours["val_loss"][0] > 30


def test_stratified_counts_keep_each_class_size() -> None:
    counts = bootstrap.stratified_counts(LABELS, replicates=300, seed=1)
    assert counts.shape == (300, len(LABELS))
    assert np.all(counts[:, LABELS == 0].sum(axis=1) == 40)
    assert np.all(counts[:, LABELS == 1].sum(axis=1) == 6)
    assert np.array_equal(counts, bootstrap.stratified_counts(LABELS, replicates=300, seed=1))
    assert not np.array_equal(counts, bootstrap.stratified_counts(LABELS, replicates=300, seed=2))


def test_stratified_counts_by_hand() -> None:
    # Two cubes and one sphere: the sphere is always drawn once, the cubes share two draws.
    counts = bootstrap.stratified_counts(np.array([0, 0, 1]), replicates=500, seed=0)
    assert np.all(counts[:, 2] == 1)
    rows = {tuple(r) for r in counts[:, :2].astype(int)}
    assert rows == {(2, 0), (1, 1), (0, 2)}


def test_a_subset_of_metrics_is_computed_alone_and_unknown_names_refused() -> None:
    counts = bootstrap.stratified_counts(LABELS, replicates=5)
    both = bootstrap.scene_metrics(PROBA, LABELS, counts)
    loss = bootstrap.scene_metrics(PROBA, LABELS, counts, ("val_loss",))
    assert list(loss) == ["val_loss"] and np.array_equal(loss["val_loss"], both["val_loss"])
    with pytest.raises(ValueError, match="unknown scene metric"):
        bootstrap.scene_metrics(PROBA, LABELS, counts, ("val_nope",))


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_scenes() -> None:
    right = np.ones(20, bool)
    b_wrong = right.copy()
    b_wrong[:5] = False
    p, only_a, only_b = bootstrap.mcnemar_p(right, b_wrong)
    assert (only_a, only_b) == (5, 0)
    assert p == pytest.approx(binomtest(0, 5, 0.5).pvalue) and p == pytest.approx(0.0625)
    mixed = right.copy()
    mixed[[0, 1, 2, 3, 4, 5, 6]] = False
    other = right.copy()
    other[[5, 6, 7, 8]] = False
    p, only_a, only_b = bootstrap.mcnemar_p(mixed, other)
    assert (only_a, only_b) == (2, 5)
    assert p == pytest.approx(binomtest(2, 7, 0.5).pvalue)
    assert bootstrap.mcnemar_p(right, right)[0] == 1.0


def test_holm_by_hand_and_against_statsmodels() -> None:
    raw = [0.01, 0.04, 0.03, 0.005]
    assert bootstrap.holm(raw) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bootstrap.holm(raw) == pytest.approx(list(multipletests(raw, method="holm")[1]))
    with_nan = bootstrap.holm([0.01, math.nan, 0.04])
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1])
    assert with_nan[2] == pytest.approx(0.04)
    assert bootstrap.holm([]) == []
