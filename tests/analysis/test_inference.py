"""The public inference API (analysis.inference: metric_interval, compare_scores, best_set)
against hand-worked cases and the well-kept libraries that compute the same quantity: the
exact binomial (scipy), Wilson (statsmodels), leave-one-out losses (sklearn), Welch's and the
paired t-test (scipy), DeLong (written out here). Its calibration is measured by simulation in
benchmarks/bench_calibration.py, not here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import log_loss, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from analysis import compare_scores, metric_interval
from analysis.cells import estimate_cell, p_cell
from analysis.inference import (
    SCENES_ONLY,
    SEEDS_AND_SCENES,
    auc_interval,
    best_set,
    delong_p,
    improvement_probability,
)
from tune_cilp.core.metrics import TRIAL_METRICS

LABELS = np.array([0] * 40 + [1] * 8)
RNG = np.random.default_rng(11)


def model(separation: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=LABELS.size) + separation * LABELS
    return 1 / (1 + np.exp(-(z - 1.5)))


def constant_within_class(cube: float, sphere: float) -> np.ndarray:
    """Every cube scored `cube`, every sphere `sphere`: no scene differs from its classmates,
    so the scene variance of any metric is 0 and only the seeds vary."""
    return np.where(LABELS == 1, sphere, cube)


def test_accuracy_of_a_perfect_model_is_clopper_pearson_and_reads_as_a_lower_bound() -> None:
    labels = np.array([0] * 164 + [1] * 15)
    perfect = np.where(labels == 1, 0.9, 0.1)[None]
    e = metric_interval(perfect, labels, "val_accuracy")
    assert e.value == 1.0 and e.high == 1.0 and e.covers == SCENES_ONLY
    assert e.low == pytest.approx(0.025 ** (1 / 179))  # 179/179: the exact bound by hand
    cell = estimate_cell(e, ".3f", TRIAL_METRICS["val_accuracy"].bounds)
    assert cell == "1.000\n[>= 0.980]"
    # every quality metric of the perfect model keeps a bound below 1
    for metric in ("val_balanced_accuracy", "val_f1", "val_roc_auc", "val_average_precision"):
        e = metric_interval(perfect, labels, metric)
        assert e.value == 1.0 and 0.5 < e.low < 1.0 and e.high == 1.0, metric


def test_accuracy_and_balanced_accuracy_against_statsmodels() -> None:
    proba = model(2.0, 1)
    predicted, pos = proba >= 0.5, LABELS == 1
    hits = int(np.sum(predicted == pos))
    e = metric_interval(proba[None], LABELS, "val_accuracy")
    assert (e.low, e.high) == pytest.approx(proportion_confint(hits, 48, method="beta"))
    recalls = []
    for cls in (pos, ~pos):
        k, n = int(np.sum(predicted[cls] == pos[cls])), int(cls.sum())
        recalls.append((k / n, *proportion_confint(k, n, method="wilson")))
    value = (recalls[0][0] + recalls[1][0]) / 2
    low = value - math.sqrt(sum((r - lo) ** 2 for r, lo, _ in recalls)) / 2
    high = value + math.sqrt(sum((hi - r) ** 2 for r, _, hi in recalls)) / 2
    b = metric_interval(proba[None], LABELS, "val_balanced_accuracy")
    assert (b.value, b.low, b.high) == pytest.approx((value, max(low, 0), min(high, 1)))


def test_auc_interval_is_the_score_interval_it_claims() -> None:
    z2 = stats.norm.ppf(0.975) ** 2
    for auc in (1.0, 0.99, 0.9, 0.5):
        low, high = auc_interval(auc, 15, 164, 0.95)
        assert 0 <= low < auc or auc == 0
        assert auc <= high <= 1
        for theta in (low, high):
            if theta in (0.0, 1.0):
                continue
            n_star = (15 + 164) / 2
            v = theta * (1 - theta) / (15 * 164)
            v *= 1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))
            assert (auc - theta) ** 2 == pytest.approx(z2 * v, rel=1e-6)
    assert auc_interval(1.0, 15, 164, 0.95)[0] == pytest.approx(0.928, abs=1e-3)


def test_one_seed_each_is_a_jackknife_over_scenes_equal_to_leave_one_out_by_sklearn() -> None:
    a, b = model(2.0, 1), model(1.0, 2)
    d = compare_scores(a[None], b[None], LABELS, "val_loss")
    assert d.difference == pytest.approx(log_loss(LABELS, b) - log_loss(LABELS, a))
    # The stratified jackknife, written out with sklearn: leave each scene out in turn.
    var = 0.0
    for members in (LABELS == 0, LABELS == 1):
        idx = np.flatnonzero(members)
        loo = []
        for s in idx:
            keep = np.arange(LABELS.size) != s
            loo.append(log_loss(LABELS[keep], b[keep]) - log_loss(LABELS[keep], a[keep]))
        loo = np.array(loo)
        var += (idx.size - 1) / idx.size * np.sum((loo - loo.mean()) ** 2)
    assert d.se == pytest.approx(math.sqrt(var), rel=1e-9)
    assert d.df == 7  # the rarer class's 8 scenes carry the variance: t with 7 df
    assert d.p_value == pytest.approx(2 * stats.t.sf(abs(d.difference) / d.se, 7))
    q = stats.t.ppf(0.975, 7)
    assert (d.low, d.high) == pytest.approx((d.difference - q * d.se, d.difference + q * d.se))
    assert d.covers == SCENES_ONLY


def test_roc_auc_difference_is_delongs_test() -> None:
    a, b = model(2.0, 3), model(1.5, 4)
    d = compare_scores(a[None], b[None], LABELS, "val_roc_auc")
    diff, p = delong_p(a, b, LABELS)
    assert d.difference == pytest.approx(roc_auc_score(LABELS, b) - roc_auc_score(LABELS, a))
    assert diff == pytest.approx(d.difference) and d.p_value == pytest.approx(p)
    assert math.isinf(d.df)  # rank metrics: normal reference (docs/STATISTICS.md)


def test_seeds_without_scene_variance_are_welchs_and_the_paired_t_test() -> None:
    a = np.stack([constant_within_class(0.2, q) for q in (0.7, 0.8, 0.75)])
    b = np.stack([constant_within_class(0.2, q) for q in (0.6, 0.65, 0.72, 0.62)])
    per_seed = [[log_loss(LABELS, s) for s in side] for side in (a, b)]
    d = compare_scores(a, b, LABELS, "val_loss")
    welch = stats.ttest_ind(per_seed[1], per_seed[0], equal_var=False)
    assert d.p_value == pytest.approx(welch.pvalue, rel=1e-9) and d.covers == SEEDS_AND_SCENES
    ci = welch.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    b3 = b[:3]
    paired = compare_scores(a, b3, LABELS, "val_loss", paired_seeds=True)
    per_b3 = per_seed[1][:3]
    assert paired.p_value == pytest.approx(stats.ttest_rel(per_b3, per_seed[0]).pvalue, rel=1e-9)


def test_identical_runs_count_once_and_shapes_and_names_are_checked() -> None:
    a = model(2.0, 1)
    twice = compare_scores(np.stack([a, a]), model(1.0, 2)[None], LABELS, "val_loss")
    assert twice.seeds == (1, 1) and twice.covers == SCENES_ONLY
    same = compare_scores(a[None], a[None], LABELS, "val_loss")
    assert same.difference == 0 and math.isnan(same.p_value)
    with pytest.raises(ValueError, match="unknown metric"):
        metric_interval(a[None], LABELS, "val_nope")
    with pytest.raises(ValueError, match="scores must be"):
        metric_interval(a[None, :10], LABELS, "val_loss")
    with pytest.raises(ValueError, match="probabilities"):
        compare_scores(a[None] + 1, a[None], LABELS, "val_loss")


def test_several_seeds_widen_the_interval_and_stay_in_range() -> None:
    scores = np.stack([model(2.0 + 0.5 * s, s) for s in range(3)])
    one = metric_interval(scores[:1], LABELS, "val_roc_auc")
    three = metric_interval(scores, LABELS, "val_roc_auc")
    values = [roc_auc_score(LABELS, s) for s in scores]
    assert three.value == pytest.approx(np.mean(values)) and three.covers == SEEDS_AND_SCENES
    seed_half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert three.high - three.low >= seed_half and 0 <= three.low <= three.high <= 1
    assert one.seeds == 1 and three.seeds == 3


def test_best_set_keeps_the_ties_and_drops_the_clearly_worse() -> None:
    labels = np.array([0] * 164 + [1] * 15)
    rng = np.random.default_rng(5)

    def scores(separation: float) -> np.ndarray:
        z = rng.normal(size=(3, labels.size)) + separation * labels
        return 1 / (1 + np.exp(-(z - 2.0)))

    result = best_set({"a": scores(3.0), "b": scores(3.0), "c": scores(0.3)}, labels, "val_loss")
    assert "c" in result.worse and "c" not in result.confidence_set
    assert result.order[-1] == "c" and sum(result.p_best.values()) == pytest.approx(1.0)
    assert len(result.pairs) == 3 and all(0 <= p <= 1 for p in result.p_holm.values())


def test_improvement_probability_is_the_seed_pairs_auc_with_newcombes_interval() -> None:
    e = improvement_probability([0.1, 0.2, 0.3], [0.25, 0.4, 0.5], "min")
    assert e.value == pytest.approx(8 / 9)  # 0.3 loses to 0.25 only
    assert (e.low, e.high) == pytest.approx(auc_interval(8 / 9, 3, 3, 0.95))


def test_p_values_at_the_floor_read_as_a_bound() -> None:
    assert p_cell(0.0004) == "< 0.001" and p_cell(0.012) == "0.012" and p_cell(math.nan) == "n/a"


def test_two_perfect_models_still_get_a_difference_interval() -> None:
    from analysis.inference import Interval, mover_difference

    labels = np.array([0] * 164 + [1] * 15)
    perfect = np.where(labels == 1, 0.9, 0.1)[None]
    d = compare_scores(perfect, perfect.copy(), labels, "val_accuracy")
    assert d.difference == 0 and math.isnan(d.low) and math.isnan(d.p_value)
    a = b = metric_interval(perfect, labels, "val_accuracy")
    wide = mover_difference(a, b, d)
    assert wide.low == pytest.approx(-(1 - a.low)) and wide.high == pytest.approx(1 - a.low)
    assert math.isnan(wide.p_value)  # an interval, not a test
    no_interval = Interval(0.5, math.nan, math.nan, 1, "", "")
    assert mover_difference(no_interval, b, d) is d
