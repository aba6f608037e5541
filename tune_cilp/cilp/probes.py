"""Linear probes: does a frozen representation carry the class before any classifier is trained?

The standard check of a contrastive encoder: a logistic regression (scikit-learn, standardised
features, class-balanced weights, so that the 93 % cubes do not decide it) fitted on the frozen
training embeddings and scored on the validation ones by ROC AUC, average precision and balanced
accuracy at 0.5, spheres positive (tune_cilp.core.metrics). A score near 1 says the class is
linearly there; ROC AUC near 0.5, that it is not.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from tune_cilp.core.metrics import binary_metrics, ranking_metrics

MAX_ITER = 2000  # lbfgs on ~1,000 x 200-3,200 standardised features converges well within it
# What a probe scores: score -> (label in the CILP table, format). What each stage probes is in
# its Stage (tune_cilp/cilp/stages.py); its last row reports probe_<what>_<score>.
PROBE_SCORES: dict[str, tuple[str, str]] = {
    "roc_auc": ("ROC AUC", ".3f"),
    "average_precision": ("AP", ".3f"),
    "balanced_accuracy": ("balanced accuracy", ".3f"),
}


def probe_key(what: str, score: str) -> str:
    """The result key of one probe score, e.g. probe_rgb_roc_auc."""
    return f"probe_{what}_{score}"


def linear_probe(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray
) -> dict[str, float]:
    """The probe's validation scores (PROBE_SCORES keys); NaN where undefined (one class only
    in the training or validation labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_y, val_y = np.asarray(train_y) >= 0.5, np.asarray(val_y) >= 0.5
    if train_y.all() or not train_y.any():
        return {score: math.nan for score in PROBE_SCORES}
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=MAX_ITER, random_state=0),
    )
    with warnings.catch_warnings():  # a not-quite-converged probe still says what it says
        warnings.simplefilter("ignore")
        model.fit(np.asarray(train_x, np.float64), train_y)
        proba = model.predict_proba(np.asarray(val_x, np.float64))[:, 1]
    ranked = ranking_metrics(proba, val_y)
    return {
        "roc_auc": ranked["val_roc_auc"],
        "average_precision": ranked["val_average_precision"],
        "balanced_accuracy": binary_metrics(proba >= 0.5, val_y)["val_balanced_accuracy"],
    }


def probe_results(what: str, scores: dict[str, float]) -> dict[str, float]:
    """linear_probe's scores under their result keys (probe_<what>_<score>)."""
    return {probe_key(what, score): value for score, value in scores.items()}
