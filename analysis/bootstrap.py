"""Per-scene metrics under scene weights, and the small tests beside them: every metric of
SCENE_METRICS under many weightings at once, by its function in the registry
(tune_cilp/core/scoring.py, numpy), equal to sklearn's with those sample weights (tested). A
weighting is a multiplicity per scene: a stratified bootstrap resample (`stratified_counts`,
each class keeps its size) or a jackknife leave-one-out (analysis.inference). Also McNemar's
exact test and Holm's adjustment (statsmodels). Plain arrays in, plain numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tune_cilp.core.metrics import SCENE_METRICS, TRIAL_METRICS
from tune_cilp.core.scoring import ScoredScenes

REPLICATES = 2000
RNG_SEED = 0  # fixed: the same experiment prints the same table
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
    metrics: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The `metrics` (default: every SCENE_METRICS metric) of scores `proba` (N,) against 0/1
    `labels` (N,) for each row of `counts` (R, N) scene multiplicities: arrays of shape (R,), by
    each metric's own function in the registry (tune_cilp.core.metrics.CLASSIFICATION).
    Threshold 0.5 (a logit >= 0); ROC AUC and AP NaN where a row has one class only."""
    known = tuple(SCENE_METRICS)
    metrics = known if metrics is None else tuple(metrics)
    unknown = set(metrics) - set(known)
    if unknown:
        raise ValueError(f"unknown scene metric(s) {sorted(unknown)}: choose from {known}")
    scores = ScoredScenes(proba, np.asarray(labels) == 1, counts)
    return {m: TRIAL_METRICS[m].values(scores) for m in metrics}


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
