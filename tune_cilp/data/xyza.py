"""LiDAR depth map -> the (4, 64, 64) XYZA tensor (docs/DATA.md, XYZA)."""

from __future__ import annotations

import numpy as np

from tune_cilp.data.constants import MAX_RANGE


def depth_to_xyza(depth: np.ndarray, azimuth: np.ndarray, zenith: np.ndarray) -> np.ndarray:
    """Convert depth maps to XYZA: x, y, z in sensor coordinates and a validity mask.

    depth is (H, W) or (N, H, W); azimuth (H,) indexes the rows, zenith (W,) the columns.
    Returns float32 (4, H, W) or (N, 4, H, W), channel order x, y, z, a (a = 1 where d < MAX_RANGE).
    """
    d = np.asarray(depth, dtype=np.float32)
    az = -np.asarray(azimuth, dtype=np.float32)[:, None]  # (H, 1)
    ze = -np.asarray(zenith, dtype=np.float32)[None, :]  # (1, W)
    x = d * (np.sin(az) * np.cos(ze))
    y = d * (np.cos(az) * np.cos(ze))
    z = d * np.sin(ze)
    a = (d < MAX_RANGE).astype(np.float32)
    return np.stack([x, y, z, a], axis=-3).astype(np.float32, copy=False)
