"""The linear probe (tune_cilp/cilp/probes.py): ≈ 1 where the class is linearly in the
features, ≈ 0.5 where the labels have nothing to do with them, NaN with one class."""

from __future__ import annotations

import math

import numpy as np

from tune_cilp.cilp.probes import PROBE_SCORES, linear_probe, probe_results


def toy(n: int, rng: np.random.Generator, spheres: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced like the seed's data: a class shifts 3 of 64 features."""
    labels = (rng.random(n) < spheres).astype(np.int64)
    features = rng.normal(size=(n, 64))
    features[:, :3] += 3.0 * labels[:, None]
    return features, labels


def test_a_separable_class_scores_about_one() -> None:
    rng = np.random.default_rng(0)
    (train_x, train_y), (val_x, val_y) = toy(800, rng), toy(400, rng)
    scores = linear_probe(train_x, train_y, val_x, val_y)
    assert set(scores) == set(PROBE_SCORES)
    assert all(value > 0.97 for value in scores.values()), scores


def test_shuffled_labels_score_about_one_half() -> None:
    rng = np.random.default_rng(1)
    (train_x, train_y), (val_x, val_y) = toy(800, rng), toy(4000, rng)
    scores = linear_probe(train_x, rng.permutation(train_y), val_x, val_y)
    assert abs(scores["roc_auc"] - 0.5) < 0.05, scores
    assert abs(scores["balanced_accuracy"] - 0.5) < 0.05, scores
    assert abs(scores["average_precision"] - val_y.mean()) < 0.05, scores  # AP of chance


def test_one_class_is_not_a_number_and_keys_say_what_was_probed() -> None:
    rng = np.random.default_rng(2)
    x, y = toy(50, rng)
    scores = linear_probe(x, np.zeros_like(y), x, y)
    assert all(math.isnan(v) for v in scores.values())
    assert set(probe_results("rgb", scores)) == {f"probe_rgb_{k}" for k in PROBE_SCORES}
