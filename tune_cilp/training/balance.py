"""Class balance in a classifier's training loss (the fusion Trainer and the CILP classifier
stage): class_balance "pos_weight" weights spheres by the training split's cubes / spheres
ratio, "sampler" draws scenes with probability 1 / (their class's count); docs/STATISTICS.md."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tune_cilp.core.errors import UserError


def class_pos_weight(cfg: Any, train_labels: np.ndarray) -> float | None:
    """The positive class's weight in the training loss: the config's own pos_weight (the
    fusion TrainConfig has one), or with class_balance "pos_weight" the training split's
    cubes / spheres ratio; None = unweighted."""
    if cfg.class_balance != "pos_weight":
        return getattr(cfg, "pos_weight", None)
    positives = int(np.sum(train_labels == 1))
    if positives == 0 or positives == len(train_labels):
        raise UserError(
            f"class_balance 'pos_weight': the training split needs both classes, got "
            f"{positives} spheres of {len(train_labels)} scenes"
        )
    return (len(train_labels) - positives) / positives


def sample_weights(train_labels: np.ndarray) -> torch.Tensor:
    """Per-scene sampling weights that balance the classes: 1 / (count of the scene's class)."""
    counts = np.bincount(train_labels, minlength=2).astype(np.float64)
    return torch.from_numpy(1.0 / counts[train_labels])
