"""Tiny hand-made raw layouts (random PNGs and depth maps) for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ANGLES = np.deg2rad(np.arange(-16, 16, 0.5)).astype(np.float32)


def make_raw(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """Write a valid raw layout with per_class random scenes in cubes/ and spheres/."""
    rng = np.random.default_rng(seed)
    for label in ("cubes", "spheres"):
        (root / label / "rgb").mkdir(parents=True)
        (root / label / "lidar").mkdir()
        np.save(root / label / "azimuth.npy", ANGLES)
        np.save(root / label / "zenith.npy", ANGLES)
        for i in range(per_class):
            rgba = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
            rgba[..., 3] = 255
            Image.fromarray(rgba).save(root / label / "rgb" / f"{i:04d}.png")
            depth = np.full((64, 64), 50.0, np.float32)
            depth[20:40, 20:40] = rng.uniform(18, 29, (20, 20))
            np.save(root / label / "lidar" / f"{i:04d}.npy", depth)
    return root
