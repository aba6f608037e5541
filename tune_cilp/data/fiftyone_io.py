"""FiftyOne side of the data layer (data.md section 4): ingest, export, import, predictions.

A CILP dataset is a persistent grouped dataset (group field "group", default slice "rgb") with the
slices rgb (the PNG), lidar_img (uint8 JPG of the depth, array field ``xyza``) and lidar_pcd (the
4,096 XYZ points); every sample has ``ground_truth``, ``scene_id`` ("cubes/0042") and a
train/validation tag. Reading such a dataset back is fiftyone_load.py. FiftyOne is imported
inside the functions: training never pays for it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tune_cilp.data.arrays import LABELS
from tune_cilp.data.fiftyone_load import import_dir, open_dataset, scene_keys
from tune_cilp.data.load import default_data_dir
from tune_cilp.data.media import write_lidar_jpg, write_pcd
from tune_cilp.data.raw import progress_bar, read_raw
from tune_cilp.data.split import (
    DEFAULT_SEED,
    DEFAULT_SPLIT,
    check_not_empty,
    check_split,
    check_subset,
    split_mask,
    subset_index,
)
from tune_cilp.errors import UserError
from tune_cilp.fiftyone_env import import_fiftyone

SLICES = ("rgb", "lidar_img", "lidar_pcd")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _check_name(name: str) -> None:
    # The name also names the media folder, so keep it a plain file name.
    if not _NAME.fullmatch(name):
        raise UserError(f"dataset name {name!r}: use letters, digits, '_', '-' and '.'")


def media_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Where ingestion writes a dataset's lidar_img and lidar_pcd files."""
    return default_data_dir(data_dir) / "fiftyone" / name


def ingest_raw(
    raw_dir: str | Path,
    name: str,
    *,
    subset: float | None = None,
    split: dict[str, float] | None = None,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> str:
    """Build the persistent grouped dataset `name` from a raw layout; return the name.

    Every file is validated before anything is created; on any failure the half-built dataset
    and its media folder are removed again.
    """
    _check_name(name)
    check_split(split or DEFAULT_SPLIT)
    if subset is not None:
        check_subset(subset)
    scenes = read_raw(raw_dir, progress=progress)  # before FiftyOne: bad files fail fast
    index = np.arange(len(scenes.ids))
    if subset is not None:
        index = subset_index(len(index), subset, seed)
    is_train = split_mask(len(index), split, seed)
    check_not_empty(is_train, str(raw_dir))
    fo = import_fiftyone()
    if fo.dataset_exists(name) and not overwrite:
        raise UserError(f"dataset {name!r} already exists (use --overwrite to replace it)")

    out = media_dir(name, data_dir)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    shutil.rmtree(out, ignore_errors=True)
    try:
        samples = []
        for j, i in enumerate(progress_bar(index, "writing lidar media", progress)):
            scene_id = str(scenes.ids[i])
            stem = out / scene_id.replace("/", "_")
            stem.parent.mkdir(parents=True, exist_ok=True)
            write_lidar_jpg(stem.with_suffix(".jpg"), scenes.depth[i])
            write_pcd(stem.with_suffix(".pcd"), scenes.xyza[i])
            group = fo.Group()
            files = (
                scenes.rgb_paths[i].resolve(),
                stem.with_suffix(".jpg"),
                stem.with_suffix(".pcd"),
            )
            for slice_name, filepath in zip(SLICES, files, strict=True):
                sample = fo.Sample(
                    filepath=str(filepath),
                    group=group.element(slice_name),
                    ground_truth=fo.Classification(label=LABELS[scenes.labels[i]]),
                    scene_id=scene_id,
                    tags=["train" if is_train[j] else "validation"],
                )
                if slice_name == "lidar_img":
                    sample["xyza"] = scenes.xyza[i]
                samples.append(sample)
        dataset = fo.Dataset(name)
        dataset.persistent = True
        dataset.add_group_field("group", default="rgb")
        dataset.add_samples(samples, progress=progress)
        dataset.info = {"raw_dir": str(Path(raw_dir).resolve()), "subset": subset, "seed": seed}
        dataset.save()
    except BaseException:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        shutil.rmtree(out, ignore_errors=True)
        raise
    return name


def export_dataset(name: str, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Export `name` in FiftyOne's FiftyOneDataset format (the seed's cilp_assessment layout)."""
    fo = import_fiftyone()
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty directory")
    dataset = open_dataset(name)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        dataset.export(
            export_dir=str(tmp), dataset_type=fo.types.FiftyOneDataset, progress=progress
        )
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def import_export(export_dir: str | Path, name: str, *, overwrite: bool = False) -> str:
    """Import a FiftyOneDataset export directory as the persistent dataset `name`."""
    fo = import_fiftyone()
    _check_name(name)
    path = Path(export_dir).expanduser()
    if not (path / "samples.json").is_file():
        raise UserError(f"{path / 'samples.json'}: missing, so {path} is no FiftyOne export")
    if fo.dataset_exists(name):
        if not overwrite:
            raise UserError(f"dataset {name!r} already exists (use --overwrite to replace it)")
        fo.delete_dataset(name)
    import_dir(path, name, persistent=True)
    return name


def add_predictions(
    dataset_name: str,
    field: str,
    ids: Any,
    labels: Any,
    confidences: Any,
) -> int:
    """Write fo.Classification(label, confidence) to `field` on every sample of each scene in ids.

    ids are CilpArrays.ids keys; labels are class names or 0/1. Returns the samples written.
    """
    fo = import_fiftyone()
    dataset = open_dataset(dataset_name)
    ids = [str(i) for i in ids]
    names = [x if isinstance(x, str) else dict(enumerate(LABELS)).get(int(x), x) for x in labels]
    confidences = [float(c) for c in confidences]
    if not len(ids) == len(names) == len(confidences):
        raise UserError(
            f"add_predictions: {len(ids)} ids, {len(names)} labels, {len(confidences)} confidences"
        )
    bad = [x for x in names if x not in LABELS]
    if bad:
        raise UserError(f"add_predictions: label {bad[0]!r} is not one of {', '.join(LABELS)}")
    group_ids, keys = scene_keys(dataset, dataset_name)
    unknown = set(ids) - set(keys)
    if unknown:
        raise UserError(
            f"add_predictions: {len(unknown)} ids not in {dataset_name}, e.g. {min(unknown)}"
        )
    wanted = {k: (lab, c) for k, lab, c in zip(ids, names, confidences, strict=True)}
    by_group = {g: wanted[k] for g, k in zip(group_ids, keys, strict=True) if k in wanted}
    written = 0
    for slice_name in dataset.group_slices:
        view = dataset.select_group_slices(slice_name)
        sample_ids, groups = view.values(["id", "group.id"])
        values = {
            sid: fo.Classification(label=by_group[str(g)][0], confidence=by_group[str(g)][1])
            for sid, g in zip(sample_ids, groups, strict=True)
            if str(g) in by_group
        }
        view.set_values(field, values, key_field="id")
        written += len(values)
    return written
