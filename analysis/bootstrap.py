"""Resampling statistics on per-scene validation scores: the stratified scene bootstrap (one
seed), seeds then scenes (several), percentile intervals, paired differences, McNemar's test.

A bootstrap replicate is a multiplicity per validation scene (how often the draw picked it), so
every metric is a weighted sum over scenes and all replicates are computed at once with numpy:
ROC AUC and average precision included, equal to sklearn's with those weights (tested). Scenes
are drawn within each class (stratified), so every replicate keeps the split's 15 spheres and
164 cubes and no replicate has one class only. Plain arrays in, plain numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tune_cilp.core.metrics import SCENE_METRICS

REPLICATES = 2000
RNG_SEED = 0  # fixed: the same experiment prints the same table
CONFIDENCE = 0.95
EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] in the loss (a saturated sigmoid)
CONSTANT = 1e-12  # replicates that spread less than this: a constant, no interval


@dataclass(frozen=True)
class Estimate:
    """A point value and its percentile interval (NaN bounds: a constant, or not available)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)


@dataclass(frozen=True)
class Paired:
    """b - a on the same resampled scenes (and seeds): the difference, its percentile interval,
    and the two-sided bootstrap p-value of "no difference" (NaN when both always agree)."""

    difference: Estimate
    p_value: float


def stratified_counts(
    labels: np.ndarray, replicates: int = REPLICATES, seed: int = RNG_SEED
) -> np.ndarray:
    """(replicates, N) multiplicities: each row draws, within each class, as many scenes as the
    class has, with replacement."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    counts = np.zeros((replicates, len(labels)), dtype=np.float64)
    rows = np.arange(replicates)[:, None]
    for cls in (0, 1):
        members = np.flatnonzero(labels == cls)
        if members.size:
            picks = members[rng.integers(0, members.size, size=(replicates, members.size))]
            np.add.at(counts, (rows, picks), 1.0)
    return counts


def seed_draws(
    seeds: Sequence[int], replicates: int = REPLICATES, seed: int = RNG_SEED
) -> np.ndarray:
    """(replicates, k) positions into the sorted `seeds`, drawn with replacement; one seed:
    always itself. The draws depend on the seed values only, so two variants run with the same
    seeds pair by seed, and variants with other seeds are drawn independently."""
    if len(seeds) == 1:
        return np.zeros((replicates, 1), dtype=np.int64)
    rng = np.random.default_rng([seed, *sorted(int(s) & 0xFFFFFFFF for s in seeds)])
    return rng.integers(0, len(seeds), size=(replicates, len(seeds)))


def scene_metrics(
    proba: np.ndarray, labels: np.ndarray, counts: np.ndarray
) -> dict[str, np.ndarray]:
    """Every SCENE_METRICS metric of scores `proba` (N,) against 0/1 `labels` (N,) for each row
    of `counts` (R, N) scene multiplicities: arrays of shape (R,). Threshold 0.5 (a logit >= 0);
    ROC AUC and AP NaN where a row has one class only."""
    proba = np.asarray(proba, np.float64)
    pos = np.asarray(labels) == 1
    counts = np.atleast_2d(np.asarray(counts, np.float64))
    clipped = np.clip(proba, EPS, 1 - EPS)
    bce = -np.where(pos, np.log(clipped), np.log1p(-clipped))
    predicted = proba >= 0.5
    n = counts.sum(axis=1)
    n_pos, n_neg = counts[:, pos].sum(axis=1), counts[:, ~pos].sum(axis=1)
    tp = counts[:, pos & predicted].sum(axis=1)
    tn = counts[:, ~pos & ~predicted].sum(axis=1)
    fp = n_neg - tn
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.stack([tp / n_pos, tn / n_neg])
        balanced = np.nanmean(np.where(np.isfinite(recalls), recalls, np.nan), axis=0)
        f1_den = 2 * tp + fp + (n_pos - tp)
        out = {
            "val_loss": counts @ bce / n,
            "val_accuracy": (tp + tn) / n,
            "val_balanced_accuracy": balanced,
            "val_f1": np.where(f1_den > 0, 2 * tp / np.where(f1_den > 0, f1_den, 1), 0.0),
            **_ranking(proba[pos], proba[~pos], counts[:, pos], counts[:, ~pos]),
        }
    assert set(out) == set(SCENE_METRICS)
    return out


def _ranking(
    s_pos: np.ndarray, s_neg: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray
) -> dict[str, np.ndarray]:
    """Weighted ROC AUC (the Mann-Whitney statistic, ties half) and average precision (sklearn's
    step-wise sum: recall gained at each positive's score times the precision there)."""
    n_pos, n_neg = c_pos.sum(axis=1), c_neg.sum(axis=1)
    below = (s_neg[:, None] < s_pos[None, :]) + 0.5 * (s_neg[:, None] == s_pos[None, :])
    auc = np.einsum("rp,rp->r", c_pos, c_neg @ below) / (n_pos * n_neg)
    tp_at = c_pos @ (s_pos[:, None] >= s_pos[None, :])  # (R, positives): TP at each threshold
    fp_at = c_neg @ (s_neg[:, None] >= s_pos[None, :])
    precision = tp_at / np.where(tp_at + fp_at > 0, tp_at + fp_at, 1)
    ap = np.einsum("rp,rp->r", c_pos, precision) / n_pos
    one_class = (n_pos == 0) | (n_neg == 0)
    return {
        "val_roc_auc": np.where(one_class, np.nan, auc),
        "val_average_precision": np.where(one_class, np.nan, ap),
    }


def seed_mean(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Replicates of a variant: (seeds, R) per-seed replicate values averaged over each row of
    `draws` (R, k) seed positions."""
    rows = np.arange(per_seed.shape[1])[:, None]
    return per_seed[draws, rows].mean(axis=1)


def percentile(value: float, replicates: np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """`value` with the percentile interval of `replicates`; none for a constant (replicates that
    do not spread) or when a replicate is not a number."""
    replicates = np.asarray(replicates, np.float64)
    if not np.all(np.isfinite(replicates)) or np.ptp(replicates) < CONSTANT:
        return Estimate(value)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Estimate(value, float(low), float(high))


def paired(
    difference: float, reps_a: np.ndarray, reps_b: np.ndarray, confidence: float = CONFIDENCE
) -> Paired:
    """b - a from replicates drawn on the same scenes (and seeds): its percentile interval and
    the two-sided p-value 2 min(P(d <= 0), P(d >= 0)), with the +1 correction so it is never 0
    (Davison & Hinkley 1997, eq. 4.11)."""
    d = np.asarray(reps_b, np.float64) - np.asarray(reps_a, np.float64)
    if not np.all(np.isfinite(d)) or np.ptp(d) < CONSTANT and abs(d[0]) < CONSTANT:
        return Paired(Estimate(difference), math.nan)
    r = d.size
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    p = min(1.0, 2 * (tail + 1) / (r + 1))
    return Paired(percentile(difference, d, confidence), float(p))


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact test (statsmodels) on the paired correctness of two classifiers on the
    same scenes: (two-sided p, scenes only a gets right, scenes only b gets right); p is 1 when
    they never disagree."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    table = [[int(np.sum(a & b)), only_a], [only_b, int(np.sum(~a & ~b))]]
    return float(mcnemar(table, exact=True).pvalue), only_a, only_b


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (statsmodels' multipletests); NaN stays NaN and is not
    counted among the comparisons."""
    from statsmodels.stats.multitest import multipletests

    valid = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    if valid:
        corrected = multipletests([p_values[i] for i in valid], method="holm")[1]
        for i, p in zip(valid, corrected, strict=True):
            adjusted[i] = float(p)
    return adjusted


def replicate_table(per_seed: Mapping[str, np.ndarray], draws: np.ndarray) -> dict[str, np.ndarray]:
    """Per metric, a variant's (R,) replicates from its (seeds, R) per-seed replicates."""
    return {m: seed_mean(v, draws) for m, v in per_seed.items()}
