"""The resampling statistics (analysis/bootstrap.py) against the well-kept libraries and hand-
worked cases: weighted metrics = sklearn's with sample weights, stratified draws keep the class
sizes, intervals stay inside [0, 1] and vanish on constants, paired p-values, McNemar and Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
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


def test_intervals_stay_inside_the_range_and_none_on_constants() -> None:
    counts = bootstrap.stratified_counts(LABELS)
    reps = bootstrap.scene_metrics(PROBA, LABELS, counts)
    whole = bootstrap.scene_metrics(PROBA, LABELS, np.ones((1, len(LABELS))))
    for metric in ("val_accuracy", "val_balanced_accuracy", "val_f1", "val_roc_auc"):
        e = bootstrap.percentile(float(whole[metric][0]), reps[metric])
        assert e.has_interval and 0.0 <= e.low <= e.high <= 1.0, metric
    assert not bootstrap.percentile(0.5, np.full(100, 0.5)).has_interval
    assert not bootstrap.percentile(0.5, np.array([0.4, np.nan, 0.6])).has_interval
    # A model that says "cubes" to everything: accuracy varies with nothing, F1 is always 0.
    cubes = bootstrap.scene_metrics(np.full(len(LABELS), 0.1), LABELS, counts)
    assert not bootstrap.percentile(0.0, cubes["val_f1"]).has_interval
    assert not bootstrap.percentile(40 / 46, cubes["val_accuracy"]).has_interval


def test_paired_p_value_floor_and_identical_models() -> None:
    a, b = np.zeros(999), np.ones(999)
    clear = bootstrap.paired(1.0, a, b + np.linspace(0, 0.1, 999))
    assert clear.p_value == pytest.approx(2 / 1000)
    assert clear.difference.low > 0
    same = bootstrap.paired(0.0, a + np.linspace(0, 1, 999), a + np.linspace(0, 1, 999))
    assert math.isnan(same.p_value) and not same.difference.has_interval
    shifted = bootstrap.paired(0.3, a, a + 0.3)  # a constant difference: certain, no interval
    assert shifted.p_value == pytest.approx(2 / 1000) and not shifted.difference.has_interval
    centred = bootstrap.paired(0.0, a, np.linspace(-1, 1, 999))
    assert centred.p_value == pytest.approx(1.0)


def test_seed_draws_depend_on_the_seed_values_not_their_order() -> None:
    assert np.array_equal(bootstrap.seed_draws([53, 51, 52]), bootstrap.seed_draws([51, 52, 53]))
    assert not np.array_equal(bootstrap.seed_draws([1, 2, 3]), bootstrap.seed_draws([1, 2, 4]))
    assert np.all(bootstrap.seed_draws([9]) == 0)
    draws = bootstrap.seed_draws([1, 2, 3], replicates=50)
    per_seed = np.array([[1.0] * 50, [2.0] * 50, [3.0] * 50])
    means = bootstrap.seed_mean(per_seed, draws)
    assert np.allclose(means, (draws + 1).mean(axis=1))


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
