"""One entry point for training data: detect the source and return CilpArrays.

A source is a raw-layout directory, a FiftyOne export directory (samples.json) or a FiftyOne
dataset name; None is the default synthetic set, generated once under the data directory and
cached there as an .npz so later loads take a fraction of a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tune_cilp.atomic import atomic_output
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.data.raw import is_raw_layout, read_raw
from tune_cilp.data.split import (
    DEFAULT_SEED,
    DEFAULT_SPLIT,
    check_not_empty,
    split_mask,
    subset_index,
)
from tune_cilp.errors import UserError

DEFAULT_SCENES = 1074  # the seed notebook's 1,074 groups
DEFAULT_SPHERE_FRACTION = 0.5
CACHE_VERSION = 1  # bump when the cached arrays' meaning changes
ARRAY_FIELDS = ("rgb", "xyza", "labels", "is_train", "ids")


def default_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else $TUNE_CILP_DATA_DIR, else ~/.cache/tune_cilp."""
    chosen = data_dir or os.environ.get("TUNE_CILP_DATA_DIR") or "~/.cache/tune_cilp"
    return Path(chosen).expanduser()


def default_raw_dir(data_dir: str | Path | None = None) -> Path:
    """Where the default synthetic set's raw layout lives (it may not exist yet)."""
    name = f"cilp-{DEFAULT_SCENES}-seed{DEFAULT_SEED}-spheres{DEFAULT_SPHERE_FRACTION:g}"
    return default_data_dir(data_dir) / "synthetic" / name


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Parallel Ray trials may all ask for the default set on a fresh machine: one generates it.
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{directory}: cannot create the data directory ({exc.strerror})") from exc
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_default_raw(data_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Generate the default synthetic raw set unless it is already there; return its path."""
    from tune_cilp.data.synthetic import generate_raw

    raw = default_raw_dir(data_dir)
    if not raw.is_dir():
        with _locked(raw.parent):
            if not raw.is_dir():
                generate_raw(
                    raw,
                    scenes=DEFAULT_SCENES,
                    seed=DEFAULT_SEED,
                    sphere_fraction=DEFAULT_SPHERE_FRACTION,
                    progress=progress,
                )
    return raw


def _save_npz(path: Path, arrays: CilpArrays) -> None:
    with atomic_output(path) as fh:
        np.savez(fh, **{k: getattr(arrays, k) for k in ARRAY_FIELDS})


def _load_npz(path: Path) -> CilpArrays | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return CilpArrays(**{k: npz[k] for k in ARRAY_FIELDS})
    except Exception:  # a damaged cache is rebuilt from the raw files, not an error
        return None


def load_default(data_dir: str | Path | None = None, *, progress: bool = True) -> CilpArrays:
    """The default synthetic set (1,074 scenes, seed 51, balanced), split 895 / 179."""
    raw = ensure_default_raw(data_dir)  # a one-off ~20 s step: always show its progress bar
    cache = raw.parent / f"{raw.name}.arrays-v{CACHE_VERSION}.npz"
    arrays = _load_npz(cache) if cache.is_file() else None
    if arrays is None:
        arrays = load_raw(raw, progress=progress)
        _save_npz(cache, arrays)
    return arrays


def load_raw(
    root: str | Path,
    *,
    subset: float | None = None,
    split: dict[str, float] | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = False,
) -> CilpArrays:
    """Read a raw-layout directory; seeded subset, then seeded split (default 0.75 / 0.15)."""
    scenes = read_raw(root, progress=progress)
    arrays = CilpArrays(
        rgb=scenes.rgb,
        xyza=scenes.xyza,
        labels=scenes.labels,
        is_train=np.zeros(len(scenes.ids), dtype=bool),
        ids=scenes.ids,
    )
    return reselect(arrays, subset=subset, split=split or DEFAULT_SPLIT, seed=seed)


def reselect(
    arrays: CilpArrays,
    *,
    subset: float | None = None,
    split: dict[str, float] | None = None,
    seed: int = DEFAULT_SEED,
) -> CilpArrays:
    """Take a seeded subset (fraction of scenes), then re-split if split fractions are given."""
    if subset is not None:
        arrays = arrays.subset(subset_index(len(arrays), subset, seed))
    if split is not None:
        arrays = dataclasses.replace(arrays, is_train=split_mask(len(arrays), split, seed))
    return arrays


def detect_source(source: str | Path) -> str:
    """Which kind of source this is: "raw", "export" or "fiftyone" (a dataset name)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "samples.json").is_file():
            return "export"
        if (path / "metadata.json").is_file() or (path / "data").is_dir():
            raise UserError(f"{path / 'samples.json'}: missing, so {path} is no FiftyOne export")
        if is_raw_layout(path):
            return "raw"
        raise UserError(
            f"{path}: neither a raw layout (cubes/, spheres/) nor a FiftyOne export (samples.json)"
        )
    if path.exists():
        raise UserError(f"{path}: not a directory")
    text = str(source)
    if isinstance(source, Path) or "/" in text or text.startswith((".", "~")):
        raise UserError(f"{path}: no such directory")
    return "fiftyone"


def load_arrays(
    source: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    subset: float | None = None,
    split: dict[str, float] | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = False,
) -> CilpArrays:
    """Load any CILP source as CilpArrays (see the module docstring for the kinds of source).

    subset: keep a seeded random fraction of the scenes. split: re-split with these fractions
    (default: a raw directory gets 0.75 / 0.15, FiftyOne sources keep their train/validation tags).
    """
    if source is None:
        arrays = reselect(
            load_default(data_dir, progress=progress), subset=subset, split=split, seed=seed
        )
        label = "default synthetic set"
    else:
        kind = detect_source(source)
        if kind == "raw":
            arrays = load_raw(source, subset=subset, split=split, seed=seed, progress=progress)
        else:
            from tune_cilp.data import fiftyone_load

            if kind == "export":
                arrays = fiftyone_load.load_export(source, progress=progress)
            else:
                arrays = fiftyone_load.load_dataset_arrays(str(source))
            arrays = reselect(arrays, subset=subset, split=split, seed=seed)
        label = str(source)
    check_not_empty(arrays.is_train, label)
    return arrays
