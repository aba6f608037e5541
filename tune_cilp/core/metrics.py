"""The metric schema: every number a trial reports or a table shows, one record per metric.

CLASSIFICATION is the registry of the classifier's metrics: one `Metric` per metric holds its
key, label, format, goal, bounds and its computation from per-scene scores
(tune_cilp/core/scoring.py). From it, with nothing listed twice:
- a trainer reports each every epoch (EPOCH, `classification_metrics`), and the runner's status
  table shows those with a ``column``;
- the analysis reduces each trial to the TRIAL metrics (`trial_metrics()`: these at its best
  epoch, and its cost) and computes each from the stored per-scene scores to resample scenes
  (analysis/bootstrap.scene_metrics: intervals, differences, the ranking);
- the comparison table shows every one as a row (analysis/table.py); the ranking's quality table
  those with a ``ranking_column`` (analysis/ranking.py), the CILP table's reference models those
  with ``reference_row`` (analysis/cilp_table.py).

Adding a metric = one entry in CLASSIFICATION plus its function (docs/STATISTICS.md, "Adding a
metric"): no other file changes. Its interval for one model is t over scenes for a mean over
scenes (a ``term``), else the stratified percentile bootstrap, unless analysis/inference.py's
SCENE_INTERVALS gives it a method of its own (as it does for accuracy, F1, ROC AUC, ...).

Classification metrics treat spheres (label 1) as the positive class (docs/PROTOCOL.md); a
prediction is positive when its logit is >= 0 (sigmoid >= 0.5). ROC AUC and average precision
rank the scenes by score and need no threshold: they say whether a model that answers "cubes"
everywhere still scores spheres above cubes. With one class only in the validation split they
are not a number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from tune_cilp.core.scoring import (
    ScoredScenes,
    accuracy,
    average_precision,
    balanced_accuracy,
    bce_terms,
    brier_terms,
    f1,
    mean_brier,
    roc_auc,
    sklearn_average_precision,
    sklearn_roc_auc,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Metric:
    """One number a trial reports or a table shows.

    key: as reported / stored; label: as a table shows it; fmt: number format; goal: "min" or
    "max" when it ranks variants (else ""); column: the status table's name; bounds: the range
    its values and intervals stay in.

    A classification metric (CLASSIFICATION) is computed from one model's per-scene scores
    (tune_cilp/core/scoring.py) by one of
      term(proba, pos) -> (N,): each scene's term, for a mean over scenes; or
      scene(ScoredScenes) -> (R,): the metric under each of R scene weightings;
    epoch(ScoredScenes) -> float, optional: how a trainer computes it where it always has
      otherwise (scikit-learn's ROC AUC, numpy's mean: the same number up to rounding); without
      it, `values` at unit weights.
    Where the tables show it beyond the comparison table (which shows every one):
      ranking_column: its column in the ranking's quality table (1 first; 0: not there, five
        fit the table's 120 characters);
      reference_row: a row of the CILP table's reference models.
    What it means on a split of one class only (analysis/one_class.py says it under the tables):
      needs: the classes (labels: 0 cubes, 1 spheres) without which it is undefined: ROC AUC and
        AP rank spheres against cubes; F1 of spheres has no recall without spheres (its 0 there
        is scikit-learn's zero_division, not a measurement);
      per_class: it combines figures of each class present (balanced accuracy: their mean
        recall; F1: the spheres' precision against cubes), so on one class it describes that
        class alone (balanced accuracy is then its recall). A mean over scenes (loss, Brier,
        accuracy) is neither: it says what it always says about the scenes there are."""

    key: str
    label: str
    fmt: str
    goal: str = ""
    column: str = ""
    bounds: tuple[float, float] = (-math.inf, math.inf)
    term: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    scene: Callable[[ScoredScenes], np.ndarray] | None = None
    epoch: Callable[[ScoredScenes], float] | None = None
    ranking_column: int = 0
    reference_row: bool = False
    needs: tuple[int, ...] = ()
    per_class: bool = False

    def values(self, scores: ScoredScenes) -> np.ndarray:
        """The metric under each of the scores' scene weightings: (R,)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.scene is not None:
                return self.scene(scores)
            if self.term is None:
                raise ValueError(f"{self.key} is not computed from per-scene scores")
            return scores.weighted_mean(self.term(scores.proba, scores.pos))

    def undefined_on(self, present: Iterable[int]) -> bool:
        """Whether it is undefined on scenes of only the `present` classes (labels)."""
        return not set(self.needs) <= set(present)

    def epoch_value(self, scores: ScoredScenes) -> float:
        """The metric as a trainer reports it (unit weights)."""
        if self.epoch is not None:
            return float(self.epoch(scores))
        return float(self.values(scores)[0])


UNIT = (0.0, 1.0)  # a rate or probability score
BOTH_CLASSES = (0, 1)  # a metric's `needs`: cubes and spheres (labels 0 and 1)
SELECT = "val_loss"  # a trial's best epoch and a variant's best trial minimise it
# The registry: the classifier's metrics, one entry each, in the order trainers report them and
# the comparison table shows them (after the seed's cost rows).
CLASSIFICATION: tuple[Metric, ...] = (
    Metric("val_loss", "Validation Loss", ".4g", "min", "val_loss", (0.0, math.inf),
           term=bce_terms, ranking_column=1, reference_row=True),
    Metric("val_accuracy", "Accuracy", ".3f", "max", "val_acc", UNIT, scene=accuracy,
           reference_row=True),
    Metric("val_balanced_accuracy", "Balanced Accuracy", ".3f", "max", "val_bal_acc", UNIT,
           scene=balanced_accuracy, ranking_column=5, reference_row=True, per_class=True),
    Metric("val_f1", "F1", ".3f", "max", bounds=UNIT, scene=f1, reference_row=True,
           needs=(1,), per_class=True),
    Metric("val_roc_auc", "ROC AUC", ".3f", "max", "val_auc", UNIT, scene=roc_auc,
           epoch=sklearn_roc_auc, ranking_column=3, needs=BOTH_CLASSES),
    Metric("val_average_precision", "AP", ".3f", "max", bounds=UNIT, scene=average_precision,
           epoch=sklearn_average_precision, ranking_column=4, needs=BOTH_CLASSES),
    Metric("val_brier", "Brier Score", ".3f", "min", bounds=UNIT, term=brier_terms,
           epoch=mean_brier, ranking_column=2),
)  # fmt: skip


class _Live(Sequence[T]):
    """A read-only tuple computed from the registry at each use, so that a registry changed while
    running (a test's scratch metric, a plugin's) is seen wherever the name was imported; it
    compares equal to the tuple it holds."""

    def __init__(self, items: Callable[[], Iterable[T]]):
        self._items = items

    def _tuple(self) -> tuple[T, ...]:
        return tuple(self._items())

    def __getitem__(self, index):  # type: ignore[override]
        return self._tuple()[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self._tuple())

    def __len__(self) -> int:
        return len(self._tuple())

    def __eq__(self, other: object) -> bool:
        return self._tuple() == (tuple(other) if isinstance(other, _Live) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._tuple())


class _ByKey(Mapping[str, Metric]):
    """Metrics by key, computed from the registry at each use (see _Live)."""

    def __init__(self, metrics: Callable[[], Iterable[Metric]]):
        self._metrics = metrics

    def __getitem__(self, key: str) -> Metric:
        for m in self._metrics():
            if m.key == key:
                return m
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter([m.key for m in self._metrics()])

    def __len__(self) -> int:
        return len(tuple(self._metrics()))


def _keys(metrics: Callable[[], Iterable[Metric]]) -> _Live[str]:
    return _Live(lambda: (m.key for m in metrics()))


_BEFORE = (
    Metric("epoch", "Epoch", "d", column="epoch"),
    Metric("train_loss", "Training Loss", ".4g", "min", column="train_loss"),
)
_AFTER = (
    Metric("lr", "Learning Rate", ".3g"),
    Metric("epoch_time_s", "s / epoch", ".2f", "min", column="epoch_s"),
    Metric("samples_per_s", "Samples / s", ".0f", "max"),
    Metric("best_val_loss", "Best Validation Loss", ".4g", "min"),
    Metric("best_epoch", "Best Epoch", "d"),
)
# What the Trainer reports every epoch, in this order.
EPOCH: Sequence[Metric] = _Live(lambda: (*_BEFORE, *CLASSIFICATION, *_AFTER))
EPOCH_KEYS: Sequence[str] = _keys(lambda: EPOCH)
EPOCH_METRICS: Mapping[str, Metric] = _ByKey(lambda: EPOCH)
# What a trial reports once (the same in every epoch's row).
TRIAL_INFO: tuple[str, ...] = (
    "num_parameters",
    "precision",
    "device",
    "node_id",
    "pid",
    "threads",
    "gpu_fraction",
    "variant_name",
    "val_majority_rate",
)
PEAK_MEMORY = Metric("peak_memory_mb", "Peak Memory (MiB)", ".0f", "min")
# Measured by the trainable around the Trainer, reported every epoch.
PROCESS: tuple[Metric, ...] = (PEAK_MEMORY,)
# What a trial cost, from its results (analysis/stats.py).
PARAMETERS = Metric("params_m", "Parameters (M)", ".4f")
TRAINING_TIME = Metric("training_time_s", "Training Time (s)", ".1f", "min")
S_PER_EPOCH = Metric("s_per_epoch", "s / epoch", ".2f", "min")


def trial_metrics() -> tuple[Metric, ...]:
    """One trial reduced to numbers (analysis), in the comparison table's order: the seed
    notebook's rows (validation loss, parameters, training time, accuracy) and the other
    classification metrics, each at the trial's best epoch by SELECT, then the ranking's costs
    per epoch."""
    chosen = tuple(m for m in CLASSIFICATION if m.key == SELECT)
    others = tuple(m for m in CLASSIFICATION if m.key != SELECT)
    return (*chosen, PARAMETERS, TRAINING_TIME, *others, S_PER_EPOCH, PEAK_MEMORY)


TRIAL_METRICS: Mapping[str, Metric] = _ByKey(trial_metrics)
# The metrics computed from a trial's per-scene scores (tune_cilp.core.predictions), so the
# analysis can resample scenes: every classification metric.
SCENE_METRICS: Sequence[str] = _keys(lambda: CLASSIFICATION)
# Validation metrics taken from a trial's best epoch (beside SELECT, which chose it).
AT_BEST_EPOCH: Sequence[str] = _keys(lambda: (m for m in CLASSIFICATION if m.key != SELECT))


def majority_rate(labels: np.ndarray) -> float:
    """The share of the most frequent class: the accuracy of always predicting it."""
    positive = float(np.mean(np.asarray(labels) == 1)) if len(labels) else 0.0
    return max(positive, 1.0 - positive)


def status_columns(metrics: Iterable[Metric]) -> dict[str, str]:
    """Tune status-table columns (result key -> column name) of the metrics with a column."""
    return {
        ("training_iteration" if m.key == "epoch" else m.key): m.column for m in metrics if m.column
    }


# Tune's status table is set up once a run: a plain dict, taken as the package is imported.
STATUS_COLUMNS: dict[str, str] = status_columns(EPOCH)


def classification_metrics(
    proba: np.ndarray,
    actual: np.ndarray,
    predicted: np.ndarray | None = None,
    **given: float,
) -> dict[str, float]:
    """Every CLASSIFICATION metric of one model's validation scores, in the registry's order, as
    a trainer reports them each epoch; `given` ones (the trainer's loss, from its logits) as
    given. proba: probability of spheres; actual: the scene is a sphere; predicted: called a
    sphere (a trainer's logit >= 0; default proba >= 0.5)."""
    scores = ScoredScenes(proba, actual, predicted=predicted)
    return {m.key: given[m.key] if m.key in given else m.epoch_value(scores)
            for m in CLASSIFICATION}  # fmt: skip


def binary_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall of both classes present) and F1 of the positive
    class, for boolean arrays, by the registry's functions; equal to sklearn.metrics'
    accuracy_score, balanced_accuracy_score and f1_score(zero_division=0) (tested), without
    importing scikit-learn in every trial."""
    predicted = np.asarray(predicted, bool)
    scores = ScoredScenes(predicted, actual, predicted=predicted)
    keys = ("val_accuracy", "val_balanced_accuracy", "val_f1")
    return {k: TRIAL_METRICS[k].epoch_value(scores) for k in keys}


def brier_score(proba: np.ndarray, actual: np.ndarray) -> float:
    """Mean squared error of the probability of spheres against 0/1: bounded in [0, 1], so one
    confident mistake moves it by at most 1/N (the BCE loss is unbounded); sklearn's
    brier_score_loss."""
    return mean_brier(ScoredScenes(proba, actual))


def ranking_metrics(scores: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """ROC AUC and average precision of `scores` (higher = more likely spheres) against boolean
    `actual`, by sklearn.metrics; both NaN when `actual` holds one class only (neither is defined
    then: sklearn raises or warns)."""
    scored = ScoredScenes(scores, actual)
    return {
        "val_roc_auc": sklearn_roc_auc(scored),
        "val_average_precision": sklearn_average_precision(scored),
    }
