"""Class balance in a classifier's training loss (the fusion Trainer and the CILP classifier
stage): class_balance "pos_weight" weights spheres by the training split's cubes / spheres
ratio, "sampler" draws scenes with probability 1 / (their class's count); docs/STATISTICS.md."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class ClassBalance:
    """What a classifier's training loss and batches take from class_balance."""

    pos_weight: torch.Tensor | None  # BCE's weight of spheres on the device; None = unweighted
    # sampler: each scene drawn with probability 1 / (its class's count), so a batch holds both
    # classes alike in expectation (torch's WeightedRandomSampler, drawn by the loop's own
    # generator so that a resume continues it); None = a plain permutation.
    sample_weights: torch.Tensor | None


def class_balance(cfg: Any, train_labels: np.ndarray, device: torch.device) -> ClassBalance:
    """The class balance of `cfg` (its class_balance, and a fusion config's own pos_weight) on
    the training split's labels."""
    weight = class_pos_weight(cfg, train_labels)
    return ClassBalance(
        pos_weight=None if weight is None else torch.tensor(weight, device=device),
        sample_weights=sample_weights(train_labels) if cfg.class_balance == "sampler" else None,
    )


def sample_weights(train_labels: np.ndarray) -> torch.Tensor:
    """Per-scene sampling weights that balance the classes: 1 / (count of the scene's class)."""
    counts = np.bincount(train_labels, minlength=2).astype(np.float64)
    return torch.from_numpy(1.0 / counts[train_labels])
