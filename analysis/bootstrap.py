"""Per-scene metrics under scene weights, and the small tests beside them: every metric of
SCENE_METRICS as a weighted sum over scenes, for many weightings at once (numpy), equal to
sklearn's with those sample weights (tested). A weighting is a multiplicity per scene: a
stratified bootstrap resample (`stratified_counts`, each class keeps its size) or a jackknife
leave-one-out (analysis.inference). Also McNemar's exact test and Holm's adjustment
(statsmodels). Plain arrays in, plain numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tune_cilp.core.metrics import SCENE_METRICS

REPLICATES = 2000
RNG_SEED = 0  # fixed: the same experiment prints the same table
EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] in the loss (a saturated sigmoid)
CONSTANT = 1e-12  # replicates that spread less than this: a constant, no interval


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


def scene_metrics(
    proba: np.ndarray,
    labels: np.ndarray,
    counts: np.ndarray,
    metrics: Sequence[str] = SCENE_METRICS,
) -> dict[str, np.ndarray]:
    """The `metrics` (default: every SCENE_METRICS metric) of scores `proba` (N,) against 0/1
    `labels` (N,) for each row of `counts` (R, N) scene multiplicities: arrays of shape (R,).
    Threshold 0.5 (a logit >= 0); ROC AUC and AP NaN where a row has one class only."""
    unknown = set(metrics) - set(SCENE_METRICS)
    if unknown:
        raise ValueError(f"unknown scene metric(s) {sorted(unknown)}: choose from {SCENE_METRICS}")
    proba = np.asarray(proba, np.float64)
    pos = np.asarray(labels) == 1
    counts = np.atleast_2d(np.asarray(counts, np.float64))
    predicted = proba >= 0.5
    n = counts.sum(axis=1)
    n_pos, n_neg = counts[:, pos].sum(axis=1), counts[:, ~pos].sum(axis=1)
    tp = counts[:, pos & predicted].sum(axis=1)
    tn = counts[:, ~pos & ~predicted].sum(axis=1)
    fp = n_neg - tn
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if "val_loss" in metrics:
            clipped = np.clip(proba, EPS, 1 - EPS)
            bce = -np.where(pos, np.log(clipped), np.log1p(-clipped))
            out["val_loss"] = counts @ bce / n
        if "val_brier" in metrics:
            out["val_brier"] = counts @ (proba - pos) ** 2 / n
        if "val_accuracy" in metrics:
            out["val_accuracy"] = (tp + tn) / n
        if "val_balanced_accuracy" in metrics:
            recalls = np.stack([tp / n_pos, tn / n_neg])
            finite = np.where(np.isfinite(recalls), recalls, np.nan)
            out["val_balanced_accuracy"] = np.nanmean(finite, axis=0)
        if "val_f1" in metrics:
            f1_den = 2 * tp + fp + (n_pos - tp)
            out["val_f1"] = np.where(f1_den > 0, 2 * tp / np.where(f1_den > 0, f1_den, 1), 0.0)
        if {"val_roc_auc", "val_average_precision"} & set(metrics):
            ranks = _ranking(proba[pos], proba[~pos], counts[:, pos], counts[:, ~pos])
            out.update({m: v for m, v in ranks.items() if m in metrics})
    return {m: out[m] for m in metrics}


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
