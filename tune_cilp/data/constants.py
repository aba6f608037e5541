"""Facts of the CILP data and the data layer's defaults, defined once (docs/DATA.md)."""

from __future__ import annotations

LABELS: tuple[str, ...] = ("cubes", "spheres")  # sorted class folder names: cubes = 0, spheres = 1
IMAGE_SIZE = 64  # RGB images and LiDAR grids are IMAGE_SIZE x IMAGE_SIZE
MAX_RANGE = 50.0  # depth of a LiDAR beam without a return (docs/DATA.md, XYZA)
DEFAULT_SEED = 51  # the seed notebook's seed: default split, subset and default synthetic set
