"""Read and validate the raw layout (docs/DATA.md, Raw layout).

<root>/{cubes,spheres}/rgb/NNNN.png, lidar/NNNN.npy, azimuth.npy, zenith.npy. Everything is read
and checked before anything is returned, so callers never build half a dataset from bad files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tune_cilp.core.errors import UserError
from tune_cilp.core.path_guard import check_readable_file
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.data.constants import IMAGE_SIZE, LABELS
from tune_cilp.data.util import one_line, progress_bar
from tune_cilp.data.xyza import depth_to_xyza

GRID = (IMAGE_SIZE, IMAGE_SIZE)
# Files operating systems drop into folders they show (besides dot-files such as .DS_Store):
# Windows' thumbnail cache and folder settings. Compared in lower case, as Windows does.
OS_FILES = frozenset({"thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class RawScenes:
    """All scenes of a raw directory, ordered cubes then spheres, each by index."""

    root: Path
    ids: np.ndarray  # str, "cubes/0042"
    labels: np.ndarray  # int64, 0 cubes / 1 spheres
    rgb: np.ndarray  # uint8 (N, 4, 64, 64)
    depth: np.ndarray  # float32 (N, 64, 64)
    xyza: np.ndarray  # float32 (N, 4, 64, 64)
    rgb_paths: list[Path]

    def to_arrays(self, is_train: np.ndarray) -> CilpArrays:
        """The scenes as CilpArrays with this train/validation split."""
        return CilpArrays(
            rgb=self.rgb, xyza=self.xyza, labels=self.labels, is_train=is_train, ids=self.ids
        )


def _is_os_file(path: Path) -> bool:
    """True for what an operating system puts into folders: dot-files, Thumbs.db, desktop.ini."""
    return path.name.startswith(".") or path.name.lower() in OS_FILES


def _check_folder(folder: Path, what: str = "folder") -> None:
    if folder.is_dir():
        return
    if folder.exists():
        raise UserError(f"{folder}: a file, but a {what} is expected here")
    raise UserError(f"{folder}: {what} missing")


def is_raw_layout(root: Path) -> bool:
    """True if root looks like a raw layout: it has at least one class folder."""
    return any((root / label).is_dir() for label in LABELS) or bool(_class_like_dirs(root))


def _class_like_dirs(root: Path) -> list[Path]:
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not _is_os_file(d) and ((d / "rgb").is_dir() or (d / "lidar").is_dir())
    )


def _indexed_files(folder: Path, suffix: str) -> dict[int, Path]:
    """Map index -> file for folder/NNNN<suffix>; anything else but OS files is an error."""
    _check_folder(folder)
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):  # sorted: the same first bad entry on every system
        if _is_os_file(path):
            continue
        if path.is_dir():
            raise UserError(f"{path}: unexpected folder (expected NNNN{suffix})")
        if path.suffix != suffix or not path.stem.isdigit():
            raise UserError(f"{path}: unexpected file (expected NNNN{suffix})")
        files[int(path.stem)] = path
    return files


def _load_npy(path: Path) -> np.ndarray:
    if path.is_dir():
        raise UserError(f"{path}: unexpected folder (expected a .npy file)")
    check_readable_file(path, "a .npy file")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt files raise ValueError, OSError, EOFError, ...
        raise UserError(f"{path}: not a readable .npy file ({one_line(exc, path)})") from exc


def _load_angles(path: Path) -> np.ndarray:
    arr = _load_npy(path)
    if arr.shape != (IMAGE_SIZE,) or not np.issubdtype(arr.dtype, np.floating):
        raise UserError(
            f"{path}: expected float angles of shape ({IMAGE_SIZE},), got {arr.dtype} {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{path}: angles contain NaN or inf")
    return arr.astype(np.float32)


def _load_depth(path: Path) -> np.ndarray:
    arr = _load_npy(path)
    if arr.shape != GRID or arr.dtype != np.float32:
        raise UserError(
            f"{path}: expected float32 depth of shape {GRID}, got {arr.dtype} {arr.shape}"
        )
    return arr


def read_png(path: Path) -> np.ndarray:
    """One RGBA image as uint8 (4, 64, 64); UserError naming the file if it is unusable."""
    check_readable_file(path, "a PNG image")
    try:
        with Image.open(path) as img:
            img.load()
            rgba = img.convert("RGBA")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
        raise UserError(f"{path}: corrupt or unreadable PNG ({one_line(exc, path)})") from exc
    if rgba.size != GRID:
        raise UserError(f"{path}: expected a {IMAGE_SIZE}x{IMAGE_SIZE} image, got {rgba.size}")
    return np.asarray(rgba).transpose(2, 0, 1)


def _check_depth_values(depth: np.ndarray, paths: list[Path]) -> None:
    bad = ~np.isfinite(depth).all(axis=(1, 2))
    if bad.any():
        raise UserError(f"{paths[int(np.argmax(bad))]}: depth contains NaN or inf")
    negative = (depth < 0).any(axis=(1, 2))
    if negative.any():
        i = int(np.argmax(negative))
        raise UserError(f"{paths[i]}: depth contains negative values (min {depth[i].min():g})")


def _paired_indices(class_dir: Path) -> tuple[list[int], dict[int, Path], dict[int, Path]]:
    rgb = _indexed_files(class_dir / "rgb", ".png")
    lidar = _indexed_files(class_dir / "lidar", ".npy")
    unpaired = sorted(set(rgb) ^ set(lidar))
    if unpaired:
        i = unpaired[0]
        missing = (
            class_dir
            / ("lidar" if i in rgb else "rgb")
            / f"{i:04d}{'.npy' if i in rgb else '.png'}"
        )
        raise UserError(
            f"{missing}: missing, so RGB and LiDAR do not pair by index "
            f"({len(rgb)} rgb files, {len(lidar)} lidar files, {len(unpaired)} unpaired)"
        )
    return sorted(rgb), rgb, lidar


def read_raw(root: str | Path, *, progress: bool = False) -> RawScenes:
    """Read and check every file of a raw-layout directory; UserError names the first bad file."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: no such directory")
    for d in _class_like_dirs(root):
        if d.name not in LABELS:
            raise UserError(f"{d}: label {d.name!r} is not one of {', '.join(LABELS)}")
    for label in LABELS:
        if not (root / label).exists():
            raise UserError(
                f"{root / label}: class folder missing (a raw layout has cubes/ and spheres/)"
            )
        _check_folder(root / label, "class folder")

    ids, labels, rgbs, depths, xyzas, rgb_paths = [], [], [], [], [], []
    for k, label in enumerate(LABELS):
        class_dir = root / label
        azimuth = _load_angles(class_dir / "azimuth.npy")
        zenith = _load_angles(class_dir / "zenith.npy")
        indices, rgb_files, lidar_files = _paired_indices(class_dir)
        paths = [lidar_files[i] for i in indices]
        depth = np.zeros((len(indices), *GRID), np.float32)
        rgb = np.zeros((len(indices), 4, *GRID), np.uint8)
        for n, i in enumerate(progress_bar(indices, f"reading {label}", progress)):
            depth[n] = _load_depth(lidar_files[i])
            rgb[n] = read_png(rgb_files[i])
        _check_depth_values(depth, paths)
        ids += [f"{label}/{i:04d}" for i in indices]
        labels.append(np.full(len(indices), k, np.int64))
        rgbs.append(rgb)
        depths.append(depth)
        xyzas.append(depth_to_xyza(depth, azimuth, zenith))
        rgb_paths += [rgb_files[i] for i in indices]
    if not ids:
        raise UserError(f"{root}: no scenes (cubes/ and spheres/ are empty)")
    return RawScenes(
        root=root,
        ids=np.array(ids),
        labels=np.concatenate(labels),
        rgb=np.concatenate(rgbs),
        depth=np.concatenate(depths),
        xyza=np.concatenate(xyzas),
        rgb_paths=rgb_paths,
    )
