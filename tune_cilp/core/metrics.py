"""The metric schema: every number a trial reports or a table shows, defined once.

The Trainer reports the EPOCH metrics every epoch; the runner's status table shows those with a
``column``; the analysis reduces each trial to the TRIAL metrics and the comparison table shows
them in TABLE_ROWS order. Adding a metric = one entry here (plus the code that computes it).

Classification metrics treat spheres (label 1) as the positive class (docs/PROTOCOL.md); a
prediction is positive when its logit is >= 0 (sigmoid >= 0.5). ROC AUC and average precision
rank the scenes by score and need no threshold: they say whether a model that answers "cubes"
everywhere still scores spheres above cubes. With one class only in the validation split they
are not a number (``ranking_metrics``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    """key: as reported / stored; label: as a table shows it; fmt: number format;
    goal: "min" or "max" when it ranks variants (else ""); column: the status table's name;
    bounds: the range its values and intervals stay in."""

    key: str
    label: str
    fmt: str
    goal: str = ""
    column: str = ""
    bounds: tuple[float, float] = (-math.inf, math.inf)


# What the Trainer reports every epoch, in this order.
EPOCH: tuple[Metric, ...] = (
    Metric("epoch", "Epoch", "d", column="epoch"),
    Metric("train_loss", "Training Loss", ".4g", "min", column="train_loss"),
    Metric("val_loss", "Validation Loss", ".4g", "min", column="val_loss"),
    Metric("val_accuracy", "Accuracy", ".3f", "max", column="val_acc"),
    Metric("val_balanced_accuracy", "Balanced Accuracy", ".3f", "max", column="val_bal_acc"),
    Metric("val_f1", "F1", ".3f", "max"),
    Metric("val_roc_auc", "ROC AUC", ".3f", "max", column="val_auc"),
    Metric("val_average_precision", "AP", ".3f", "max"),
    Metric("val_brier", "Brier Score", ".3f", "min"),
    Metric("lr", "Learning Rate", ".3g"),
    Metric("epoch_time_s", "s / epoch", ".2f", "min", column="epoch_s"),
    Metric("samples_per_s", "Samples / s", ".0f", "max"),
    Metric("best_val_loss", "Best Validation Loss", ".4g", "min"),
    Metric("best_epoch", "Best Epoch", "d"),
)
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
# Measured by the trainable around the Trainer, reported every epoch.
PROCESS: tuple[Metric, ...] = (Metric("peak_memory_mb", "Peak Memory (MiB)", ".0f", "min"),)
# One trial reduced to numbers (analysis): quality at the best epoch by SELECT, and its cost.
UNIT = (0.0, 1.0)  # a rate or probability score
TRIAL: tuple[Metric, ...] = (
    Metric("val_loss", "Validation Loss", ".4g", "min", bounds=(0.0, math.inf)),
    Metric("params_m", "Parameters (M)", ".4f"),
    Metric("training_time_s", "Training Time (s)", ".1f", "min"),
    Metric("val_accuracy", "Accuracy", ".3f", "max", bounds=UNIT),
    Metric("val_balanced_accuracy", "Balanced Accuracy", ".3f", "max", bounds=UNIT),
    Metric("val_f1", "F1", ".3f", "max", bounds=UNIT),
    Metric("val_roc_auc", "ROC AUC", ".3f", "max", bounds=UNIT),
    Metric("val_average_precision", "AP", ".3f", "max", bounds=UNIT),
    Metric("val_brier", "Brier Score", ".3f", "min", bounds=UNIT),
    Metric("s_per_epoch", "s / epoch", ".2f", "min"),
    Metric("peak_memory_mb", "Peak Memory (MiB)", ".0f", "min"),
)
SELECT = "val_loss"  # a trial's best epoch and a variant's best trial minimise it
# Validation metrics taken from a trial's best epoch.
AT_BEST_EPOCH: tuple[str, ...] = (
    "val_accuracy",
    "val_balanced_accuracy",
    "val_f1",
    "val_roc_auc",
    "val_average_precision",
    "val_brier",
)
# The metrics computed from a trial's per-scene validation scores (tune_cilp.core.predictions),
# so the analysis can resample scenes: SELECT and AT_BEST_EPOCH.
SCENE_METRICS: tuple[str, ...] = (SELECT, *AT_BEST_EPOCH)

EPOCH_KEYS: tuple[str, ...] = tuple(m.key for m in EPOCH)
EPOCH_METRICS: dict[str, Metric] = {m.key: m for m in EPOCH}
TRIAL_METRICS: dict[str, Metric] = {m.key: m for m in TRIAL}


def majority_rate(labels: np.ndarray) -> float:
    """The share of the most frequent class: the accuracy of always predicting it."""
    positive = float(np.mean(np.asarray(labels) == 1)) if len(labels) else 0.0
    return max(positive, 1.0 - positive)


# Linear probes of frozen representations (tune_cilp/cilp/probes.py): what is probed, after
# which stage, and the scores; a stage's last row reports probe_<what>_<score>.
PROBED: dict[str, tuple[str, str]] = {
    "rgb": ("contrastive", "image emb."),
    "lidar": ("contrastive", "LiDAR emb."),
    "projected": ("projector", "projected image emb."),
}
PROBE_SCORES: dict[str, tuple[str, str]] = {  # score -> (label, format)
    "roc_auc": ("ROC AUC", ".3f"),
    "average_precision": ("AP", ".3f"),
    "balanced_accuracy": ("balanced accuracy", ".3f"),
}


def probe_key(what: str, score: str) -> str:
    """The result key of one probe score, e.g. probe_rgb_roc_auc."""
    return f"probe_{what}_{score}"


PROBE_ROWS: tuple[Metric, ...] = tuple(
    Metric(probe_key(what, score), f"Linear probe, {name}: {label}", spec, "max")
    for what, (_, name) in PROBED.items()
    for score, (label, spec) in PROBE_SCORES.items()
)

# The CILP table's rows (analysis/cilp_table.py): one chain (one seed) reduced to numbers, each
# stage at the epoch whose weights it kept (its best by validation loss), the probes on those.
CILP_ROWS: tuple[Metric, ...] = (
    Metric("contrastive_val_loss", "Contrastive Validation Loss", ".4g", "min"),
    Metric("top1_rgb_to_lidar", "Retrieval top-1 RGB→LiDAR", ".3f", "max"),
    Metric("top1_lidar_to_rgb", "Retrieval top-1 LiDAR→RGB", ".3f", "max"),
    Metric("projector_val_mse", "Projector Validation MSE", ".4g", "min"),
    *PROBE_ROWS,
    Metric("classifier_val_loss", "Classifier Validation Loss", ".4g", "min"),
    *(TRIAL_METRICS[k] for k in (*AT_BEST_EPOCH, "params_m", "training_time_s")),
)


def status_columns(metrics: tuple[Metric, ...]) -> dict[str, str]:
    """Tune status-table columns (result key -> column name) of the metrics with a column."""
    return {
        ("training_iteration" if m.key == "epoch" else m.key): m.column for m in metrics if m.column
    }


STATUS_COLUMNS: dict[str, str] = status_columns(EPOCH)


def binary_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall of both classes present) and F1 of the positive
    class, for boolean arrays; equal to sklearn.metrics' accuracy_score, balanced_accuracy_score
    and f1_score(zero_division=0) (tested), without importing scikit-learn in every trial."""
    predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    tn = int(np.sum(~predicted & ~actual))
    recalls = [hits / total for hits, total in ((tp, tp + fn), (tn, tn + fp)) if total]
    return {
        "val_accuracy": (tp + tn) / len(actual),
        "val_balanced_accuracy": float(np.mean(recalls)),
        "val_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


def brier_score(proba: np.ndarray, actual: np.ndarray) -> float:
    """Mean squared error of the probability of spheres against 0/1: bounded in [0, 1], so one
    confident mistake moves it by at most 1/N (the BCE loss is unbounded); sklearn's
    brier_score_loss."""
    proba, actual = np.asarray(proba, np.float64), np.asarray(actual, bool)
    return float(np.mean((proba - actual) ** 2))


def ranking_metrics(scores: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """ROC AUC and average precision of `scores` (higher = more likely spheres) against boolean
    `actual`, by sklearn.metrics; both NaN when `actual` holds one class only (neither is defined
    then: sklearn raises or warns)."""
    actual = np.asarray(actual, bool)
    if actual.all() or not actual.any():
        return {"val_roc_auc": math.nan, "val_average_precision": math.nan}
    from sklearn.metrics import average_precision_score, roc_auc_score  # ~0.5 s, once a process

    scores = np.asarray(scores, np.float64)
    return {
        "val_roc_auc": float(roc_auc_score(actual, scores)),
        "val_average_precision": float(average_precision_score(actual, scores)),
    }
