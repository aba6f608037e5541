"""How the classification metrics are computed from one model's per-scene scores: plain numpy,
one implementation for a trainer's per-epoch numbers and the analysis' intervals and tests.

A metric's function reads a `ScoredScenes`: the probability of spheres per scene, which scenes are
spheres, and R weightings of the scenes (a multiplicity per scene: one row of ones for the plain
metric, a stratified bootstrap resample, a jackknife leave-one-out), and returns the metric under
each weighting, shape (R,). Weighted metrics equal scikit-learn's with those sample weights
(tests/analysis/test_bootstrap.py). A metric that is a mean over scenes is given by its
per-scene term instead (`bce_terms`, `brier_terms`): the metric is the weighted mean of the terms.

Spheres (label 1) are the positive class; a scene is called a sphere at probability >= 0.5 (a
trainer passes its logit >= 0 as `predicted`). ROC AUC and average precision are NaN under a
weighting that leaves one class only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property

import numpy as np

EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] in the loss (a saturated sigmoid)


class ScoredScenes:
    """One model's scores on N scenes under R weightings.

    proba (N,): probability of spheres; pos (N,): the scene is a sphere; counts (R, N): each
    scene's multiplicity per weighting (None: one row of ones); predicted (N,): called a sphere
    (None: proba >= 0.5). The weighted confusion counts, (R,) each, are summed on first use."""

    def __init__(
        self,
        proba: np.ndarray,
        pos: np.ndarray,
        counts: np.ndarray | None = None,
        predicted: np.ndarray | None = None,
    ):
        self.proba = np.asarray(proba, np.float64)
        self.pos = np.asarray(pos, bool)
        counts = np.ones((1, len(self.proba))) if counts is None else counts
        self.counts = np.atleast_2d(np.asarray(counts, np.float64))
        self.predicted = self.proba >= 0.5 if predicted is None else np.asarray(predicted, bool)

    @cached_property
    def n(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    @cached_property
    def n_pos(self) -> np.ndarray:
        return self.counts[:, self.pos].sum(axis=1)

    @cached_property
    def n_neg(self) -> np.ndarray:
        return self.counts[:, ~self.pos].sum(axis=1)

    @cached_property
    def tp(self) -> np.ndarray:
        return self.counts[:, self.pos & self.predicted].sum(axis=1)

    @cached_property
    def tn(self) -> np.ndarray:
        return self.counts[:, ~self.pos & ~self.predicted].sum(axis=1)

    @property
    def fp(self) -> np.ndarray:
        return self.n_neg - self.tn

    @property
    def fn(self) -> np.ndarray:
        return self.n_pos - self.tp

    def weighted_mean(self, terms: np.ndarray) -> np.ndarray:
        """The mean of per-scene `terms` (N,) under each weighting: (R,)."""
        return self.counts @ terms / self.n


# --- means over scenes: the per-scene term -----------------------------------------------------


def bce_terms(proba: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Each scene's binary cross-entropy (the loss), its probability clipped to [EPS, 1 - EPS]."""
    clipped = np.clip(proba, EPS, 1 - EPS)
    return -np.where(pos, np.log(clipped), np.log1p(-clipped))


def brier_terms(proba: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Each scene's squared error of the probability against 0/1: in [0, 1], so one confident
    mistake moves the Brier score by at most 1/N (the loss is unbounded)."""
    return (proba - pos) ** 2


# --- at the threshold ---------------------------------------------------------------------------


def accuracy(s: ScoredScenes) -> np.ndarray:
    return (s.tp + s.tn) / s.n


def balanced_accuracy(s: ScoredScenes) -> np.ndarray:
    """The mean recall of the classes present (sklearn's balanced_accuracy_score)."""
    recalls = np.stack([s.tp / s.n_pos, s.tn / s.n_neg])
    finite = np.where(np.isfinite(recalls), recalls, np.nan)
    return np.nanmean(finite, axis=0)


def f1(s: ScoredScenes) -> np.ndarray:
    """F1 of spheres; 0 with no sphere predicted or present (sklearn's zero_division=0)."""
    den = 2 * s.tp + s.fp + s.fn
    return np.where(den > 0, 2 * s.tp / np.where(den > 0, den, 1), 0.0)


# --- by rank: no threshold ----------------------------------------------------------------------


def _by_class(s: ScoredScenes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(spheres' scores, cubes' scores, spheres' counts, cubes' counts)."""
    return s.proba[s.pos], s.proba[~s.pos], s.counts[:, s.pos], s.counts[:, ~s.pos]


def _defined(s: ScoredScenes, values: np.ndarray) -> np.ndarray:
    """`values` where the weighting keeps both classes, else NaN."""
    return np.where((s.n_pos == 0) | (s.n_neg == 0), np.nan, values)


def roc_auc(s: ScoredScenes) -> np.ndarray:
    """The weighted Mann-Whitney statistic (ties count half)."""
    s_pos, s_neg, c_pos, c_neg = _by_class(s)
    below = (s_neg[:, None] < s_pos[None, :]) + 0.5 * (s_neg[:, None] == s_pos[None, :])
    return _defined(s, np.einsum("rp,rp->r", c_pos, c_neg @ below) / (s.n_pos * s.n_neg))


def average_precision(s: ScoredScenes) -> np.ndarray:
    """sklearn's step-wise sum: the recall gained at each sphere's score times the precision
    there."""
    s_pos, s_neg, c_pos, c_neg = _by_class(s)
    tp_at = c_pos @ (s_pos[:, None] >= s_pos[None, :])  # (R, spheres): TP at each threshold
    fp_at = c_neg @ (s_neg[:, None] >= s_pos[None, :])
    precision = tp_at / np.where(tp_at + fp_at > 0, tp_at + fp_at, 1)
    return _defined(s, np.einsum("rp,rp->r", c_pos, precision) / s.n_pos)


# --- what a trainer has always reported, where it computes otherwise ---------------------------
# The same numbers as the functions above at unit weights, up to rounding (tested); kept so a
# trial's reported metrics stay bit for bit what they were.


def _sklearn_ranking(s: ScoredScenes, score: Callable[..., float]) -> float:
    if s.pos.all() or not s.pos.any():  # one class: not defined (sklearn raises or warns)
        return math.nan
    return float(score(s.pos, s.proba))


def sklearn_roc_auc(s: ScoredScenes) -> float:
    from sklearn.metrics import roc_auc_score  # ~0.5 s, once a process

    return _sklearn_ranking(s, roc_auc_score)


def sklearn_average_precision(s: ScoredScenes) -> float:
    from sklearn.metrics import average_precision_score

    return _sklearn_ranking(s, average_precision_score)


def mean_brier(s: ScoredScenes) -> float:
    """sklearn's brier_score_loss: the plain mean of the squared errors."""
    return float(np.mean(brier_terms(s.proba, s.pos)))
