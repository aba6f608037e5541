"""The derived media of the FiftyOne slices: a uint8 JPG of the depth map and a .pcd cloud."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_lidar_jpg(path: Path, depth: np.ndarray) -> None:
    """The depth map cast with astype(uint8), as the real dataset has it (for viewing only)."""
    Image.fromarray(depth.astype(np.uint8), mode="L").save(path, format="JPEG", quality=95)


def write_pcd(path: Path, xyza: np.ndarray) -> None:
    """All 64 x 64 XYZ points of one scene as a binary PCD v0.7 file (FiftyOne's 3-D viewer)."""
    points = np.ascontiguousarray(xyza[:3].reshape(3, -1).T, dtype="<f4")
    n = len(points)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\n"
        f"TYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\n"
        "DATA binary\n"
    )
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(points.tobytes())
