"""The one entry point for training data: detect the source and return CilpArrays.

A source is a raw-layout directory, a FiftyOne export directory (samples.json), a FiftyOne
dataset name or ``synthetic:NAME`` (a built-in synthetic set); None is the default synthetic set,
``synthetic:seed`` (docs/DATA.md, Sources). Each kind has its own
reader (raw.read_raw, fiftyone_data.read_export and read_dataset, default_set.read_default).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tune_cilp.core.errors import UserError
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.data.constants import DEFAULT_SEED
from tune_cilp.data.default_set import SYNTHETIC_PREFIX, read_default, synthetic_set
from tune_cilp.data.fiftyone_data import read_dataset, read_export
from tune_cilp.data.raw import is_raw_layout, read_raw
from tune_cilp.data.split import DEFAULT_SPLIT, check_not_empty, split_mask, subset_index

# The one name of the data-source option in every command (run, data inspect, benchmarks);
# "--data" is the benchmarks' old spelling, kept as an alias.
DATASET_FLAGS = ("--dataset", "--data")


def detect_source(source: str | Path) -> str:
    """Which kind of source this is: "raw", "export", "synthetic" or "fiftyone" (a dataset name)."""
    if str(source).startswith(SYNTHETIC_PREFIX):
        synthetic_set(str(source))  # an unknown name fails here
        return "synthetic"
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
    (default: a raw directory gets DEFAULT_SPLIT, the other sources keep their split).
    """
    if source is None:
        arrays, label = read_default(data_dir, progress=progress), "default synthetic set"
    else:
        kind, label = detect_source(source), str(source)
        if kind == "synthetic":
            arrays = read_default(data_dir, synthetic_set(str(source)), progress=progress)
        elif kind == "raw":
            scenes = read_raw(source, progress=progress)
            arrays = scenes.to_arrays(np.zeros(len(scenes.ids), dtype=bool))
            split = split or DEFAULT_SPLIT  # raw files carry no split
        elif kind == "export":
            arrays = read_export(source, progress=progress)
        else:
            arrays = read_dataset(str(source))
    if subset is not None:
        arrays = arrays.subset(subset_index(len(arrays), subset, seed))
    if split is not None:
        arrays = dataclasses.replace(arrays, is_train=split_mask(len(arrays), split, seed))
    check_not_empty(arrays.is_train, label)
    return arrays
