"""Read a CILP FiftyOne dataset or FiftyOneDataset export into CilpArrays.

Vectorised: one values() call per field and slice, never a query per sample. Scenes are keyed
by the samples' scene_id; datasets without it (the real seed export) get keys from the rgb file
path ("cubes/rgb/0042.png" -> "cubes/0042") or, failing that, the group id.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from tune_cilp.data.arrays import IMAGE_SIZE, LABELS, CilpArrays
from tune_cilp.data.raw import load_rgb, one_line
from tune_cilp.data.split import check_not_empty
from tune_cilp.errors import UserError
from tune_cilp.fiftyone_env import import_fiftyone

_RGB_PATH = re.compile(r"(cubes|spheres)/rgb/(\d+)\.png$")
# Names of datasets that exist only while this package builds or replaces one.
TMP_PREFIX = "tune_cilp-tmp-"


def open_dataset(name: str) -> Any:
    """fo.load_dataset(name), or UserError if there is no such dataset."""
    fo = import_fiftyone()
    if not fo.dataset_exists(name):
        raise UserError(f"{name}: no such directory and no FiftyOne dataset of that name")
    return fo.load_dataset(name)


def import_dir(export_dir: Path, name: str, *, persistent: bool, progress: bool = True) -> Any:
    """fo.Dataset.from_dir for a FiftyOneDataset export; UserError if FiftyOne cannot read it."""
    fo = import_fiftyone()
    try:
        dataset = fo.Dataset.from_dir(
            dataset_dir=str(export_dir),
            dataset_type=fo.types.FiftyOneDataset,
            name=name,
            persistent=persistent,
            progress=progress,
        )
    except Exception as exc:  # FiftyOne's importers raise anything from KeyError to ValueError
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        raise UserError(f"{export_dir / 'samples.json'}: cannot import ({one_line(exc)})") from exc
    return dataset


def load_export(export_dir: str | Path, *, progress: bool = False) -> CilpArrays:
    """Arrays of a FiftyOneDataset export, through a temporary (non-persistent) import."""
    path = Path(export_dir).expanduser()
    name = f"{TMP_PREFIX}{uuid.uuid4().hex}"
    dataset = import_dir(path, name, persistent=False, progress=progress)
    try:
        return dataset_arrays(dataset, str(path))
    finally:
        dataset.delete()


def load_dataset_arrays(name: str) -> CilpArrays:
    """Arrays of the FiftyOne dataset `name` (split from its train/validation tags)."""
    return dataset_arrays(open_dataset(name), name)


def scene_keys(dataset: Any, source: str) -> tuple[list[str], list[str]]:
    """(group ids, scene keys) of the rgb slice: scene_id, else derived from the rgb file path."""
    if dataset.media_type != "group" or not {"rgb", "lidar_img"} <= set(dataset.group_slices):
        raise UserError(f"{source}: not a CILP dataset (needs group slices rgb and lidar_img)")
    rgb = dataset.select_group_slices("rgb")
    group_ids = [str(g) for g in rgb.values("group.id")]
    if "scene_id" in rgb.get_field_schema():
        keys = [str(k) for k in rgb.values("scene_id")]
    else:  # the real seed export has no scene_id: the course's file names carry class and index
        matches = [_RGB_PATH.search(p.replace(os.sep, "/")) for p in rgb.values("filepath")]
        keys = [f"{m[1]}/{int(m[2]):04d}" if m else "" for m in matches]
        if not all(keys) or len(set(keys)) != len(keys):
            keys = group_ids
    return group_ids, keys


def dataset_arrays(dataset: Any, source: str) -> CilpArrays:
    group_ids, keys = scene_keys(dataset, source)
    rgb_view = dataset.select_group_slices("rgb")
    if "ground_truth" not in rgb_view.get_field_schema():
        raise UserError(f"{source}: samples have no ground_truth field")
    paths, labels, tags = rgb_view.values(["filepath", "ground_truth.label", "tags"])
    lidar = dataset.select_group_slices("lidar_img")
    if "xyza" not in lidar.get_field_schema():
        raise UserError(f"{source}: the lidar_img slice has no xyza field")
    xyza_by_group = dict(zip(map(str, lidar.values("group.id")), lidar.values("xyza"), strict=True))

    n = len(keys)
    rgb = np.zeros((n, 4, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    xyza = np.zeros((n, 4, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    label_ids = np.zeros(n, np.int64)
    is_train = np.zeros(n, bool)
    for k in range(n):
        where = f"{source}: sample {paths[k]}"
        if labels[k] not in LABELS:
            raise UserError(f"{where}: label {labels[k]!r} is not one of {', '.join(LABELS)}")
        split_tags = {"train", "validation"} & set(tags[k] or [])
        if len(split_tags) != 1:
            raise UserError(f"{where}: needs exactly one of the tags train, validation")
        arr = xyza_by_group.get(group_ids[k])
        if arr is None or np.shape(arr) != xyza.shape[1:]:
            raise UserError(f"{where}: its lidar_img has no xyza array of shape {xyza.shape[1:]}")
        xyza[k] = arr
        rgb[k] = load_rgb(Path(paths[k]))
        label_ids[k] = LABELS.index(labels[k])
        is_train[k] = "train" in split_tags
    order = np.argsort(np.array(keys), kind="stable")
    arrays = CilpArrays(rgb=rgb, xyza=xyza, labels=label_ids, is_train=is_train, ids=np.array(keys))
    check_not_empty(arrays.is_train, source)
    return arrays.subset(order)
