"""The compact in-memory form of a CILP dataset that training consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tune_cilp.data.constants import IMAGE_SIZE, LABELS


@dataclass(frozen=True)
class CilpArrays:
    """One dataset as NumPy arrays, aligned by scene.

    rgb:      uint8   (N, 4, 64, 64)  RGBA camera image, channels first (divide by 255 to train)
    xyza:     float32 (N, 4, 64, 64)  LiDAR x, y, z and validity mask (docs/DATA.md, XYZA)
    labels:   int64   (N,)            0 = cubes, 1 = spheres
    is_train: bool    (N,)            True for the train split, False for validation
    ids:      str     (N,)            stable scene key, "cubes/0042" (class folder / index)
    """

    rgb: np.ndarray
    xyza: np.ndarray
    labels: np.ndarray
    is_train: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        shapes = {
            "rgb": (self.rgb, (n, 4, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
            "xyza": (self.xyza, (n, 4, IMAGE_SIZE, IMAGE_SIZE), np.float32),
            "labels": (self.labels, (n,), np.int64),
            "is_train": (self.is_train, (n,), np.bool_),
            "ids": (self.ids, (n,), None),
        }
        for name, (arr, shape, dtype) in shapes.items():
            if arr.shape != shape or (dtype is not None and arr.dtype != dtype):
                raise ValueError(
                    f"CilpArrays.{name}: expected {shape} {dtype}, got {arr.shape} {arr.dtype}"
                )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask_or_index: np.ndarray) -> CilpArrays:
        """The scenes selected by a boolean mask or an index array, in that order."""
        return CilpArrays(
            rgb=self.rgb[mask_or_index],
            xyza=self.xyza[mask_or_index],
            labels=self.labels[mask_or_index],
            is_train=self.is_train[mask_or_index],
            ids=self.ids[mask_or_index],
        )

    @property
    def train(self) -> CilpArrays:
        return self.subset(self.is_train)

    @property
    def validation(self) -> CilpArrays:
        return self.subset(~self.is_train)

    def counts(self) -> dict[str, dict[str, int]]:
        """Scene counts per split and label, e.g. {"train": {"cubes": 447, "spheres": 448}, ...}."""
        out: dict[str, dict[str, int]] = {}
        for split, mask in (("train", self.is_train), ("validation", ~self.is_train)):
            labels = self.labels[mask]
            out[split] = {name: int(np.sum(labels == k)) for k, name in enumerate(LABELS)}
        return out
