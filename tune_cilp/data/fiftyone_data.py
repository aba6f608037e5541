"""FiftyOne side of the data layer: read a CILP dataset or export, ingest, export, predictions.

A CILP dataset is a persistent grouped dataset with the slices rgb, lidar_img (carrying ``xyza``)
and lidar_pcd, and ``ground_truth``, ``scene_id`` and a train/validation tag on every sample
(docs/DATA.md, FiftyOne dataset). FiftyOne is imported inside the functions: training never pays
for it. Reading is vectorised: one values() call per field and slice, never a query per sample.

Replacing a dataset (overwrite) never touches the old one until the new one is complete: the new
one is built under a temporary name with its media in a folder of its own, then takes over the
name (a one-document rename), and only then are the old dataset and its media deleted. Media
folders are never moved, so every dataset always has all of its media, even after a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from tune_cilp.core.errors import UserError
from tune_cilp.core.fiftyone_env import import_fiftyone
from tune_cilp.core.path_guard import check_output_dir, write_error
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.data.constants import DEFAULT_SEED, IMAGE_SIZE, LABELS
from tune_cilp.data.default_set import default_data_dir
from tune_cilp.data.media import write_lidar_jpg, write_pcd
from tune_cilp.data.raw import RawScenes, read_png, read_raw
from tune_cilp.data.split import (
    DEFAULT_SPLIT,
    check_not_empty,
    check_split,
    check_subset,
    split_mask,
    subset_index,
)
from tune_cilp.data.util import one_line, progress_bar

SLICES = ("rgb", "lidar_img", "lidar_pcd")
TMP_PREFIX = "tune_cilp-tmp-"  # names of datasets that exist only while one is built or replaced
MEDIA_INFO_KEY = "media_dir"  # dataset.info entry: the build folder ingestion wrote the media to
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_RGB_PATH = re.compile(r"(cubes|spheres)/rgb/(\d+)\.png$")


# --- names, datasets and media folders ---------------------------------------------------------


def _check_name(name: str) -> None:
    # The name also names the media folder, so keep it a plain file name.
    if not _NAME.fullmatch(name):
        raise UserError(f"dataset name {name!r}: use letters, digits, '_', '-' and '.'")


def _check_free(fo: Any, name: str, overwrite: bool) -> None:
    if fo.dataset_exists(name) and not overwrite:
        raise UserError(f"dataset {name!r} already exists (use --overwrite to replace it)")


def media_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder of dataset `name`'s lidar_img and lidar_pcd files, one sub-folder per build."""
    return default_data_dir(data_dir) / "fiftyone" / name


def _open_dataset(name: str) -> Any:
    fo = import_fiftyone()
    if not fo.dataset_exists(name):
        raise UserError(f"{name}: no such directory and no FiftyOne dataset of that name")
    return fo.load_dataset(name)


def _import_dir(export_dir: Path, name: str, *, progress: bool = True) -> Any:
    """A non-persistent dataset `name` from a FiftyOneDataset export; UserError if unreadable."""
    fo = import_fiftyone()
    try:
        return fo.Dataset.from_dir(
            dataset_dir=str(export_dir),
            dataset_type=fo.types.FiftyOneDataset,
            name=name,
            persistent=False,
            progress=progress,
        )
    except Exception as exc:  # FiftyOne's importers raise anything from KeyError to ValueError
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        raise UserError(f"{export_dir / 'samples.json'}: cannot import ({one_line(exc)})") from exc


def _take_name(fo: Any, new: Any, name: str, overwrite: bool) -> Any | None:
    """Make the complete dataset `new` the persistent dataset `name`; return the one it displaced.

    The displaced dataset keeps a temporary name until the caller deletes it; if `new` cannot take
    the name, the old one gets its name back.
    """
    new.persistent = True
    old = None
    if fo.dataset_exists(name):
        _check_free(fo, name, overwrite)  # again: another process may have made it meanwhile
        old = fo.load_dataset(name)
        old.name = f"{TMP_PREFIX}old-{new.name.removeprefix(TMP_PREFIX)}"
    try:
        new.name = name
    except BaseException:
        if old is not None:
            old.name = name
        raise
    return old


def _delete_old(old: Any, name: str) -> None:
    """Delete a replaced dataset and the media ingestion wrote for it (never media it shares)."""
    media = old.info.get(MEDIA_INFO_KEY)
    old.delete()
    # A clone carries its source's info: a folder named after another dataset is not ours.
    if media and Path(media).parent.name == name:
        _remove_media(Path(media))


def _remove_media(build: Path) -> None:
    shutil.rmtree(build, ignore_errors=True)
    # The dataset's media folder goes with its last build (not if it is not empty or a file).
    with contextlib.suppress(OSError):
        build.parent.rmdir()


# --- reading into CilpArrays --------------------------------------------------------------------


def read_dataset(name: str) -> CilpArrays:
    """Arrays of the FiftyOne dataset `name` (split from its train/validation tags)."""
    return _arrays_of(_open_dataset(name), name)


def read_export(export_dir: str | Path, *, progress: bool = False) -> CilpArrays:
    """Arrays of a FiftyOneDataset export, through a temporary (non-persistent) import."""
    path = Path(export_dir).expanduser()
    dataset = _import_dir(path, f"{TMP_PREFIX}{uuid.uuid4().hex}", progress=progress)
    try:
        return _arrays_of(dataset, str(path))
    finally:
        dataset.delete()


def _scene_keys(dataset: Any, source: str) -> tuple[list[str], list[str]]:
    """(group ids, scene keys) of the rgb slice: scene_id, else derived from the rgb file path."""
    if dataset.media_type != "group" or not {"rgb", "lidar_img"} <= set(dataset.group_slices):
        raise UserError(f"{source}: not a CILP dataset (needs group slices rgb and lidar_img)")
    rgb = dataset.select_group_slices("rgb")
    group_ids = [str(g) for g in rgb.values("group.id")]
    if "scene_id" in rgb.get_field_schema():
        keys = [str(k) for k in rgb.values("scene_id")]
    else:  # the real export has no scene_id: its file names carry class and index
        matches = [_RGB_PATH.search(p.replace(os.sep, "/")) for p in rgb.values("filepath")]
        keys = [f"{m[1]}/{int(m[2]):04d}" if m else "" for m in matches]
        if not all(keys) or len(set(keys)) != len(keys):
            keys = group_ids
    return group_ids, keys


def _arrays_of(dataset: Any, source: str) -> CilpArrays:
    group_ids, keys = _scene_keys(dataset, source)
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
        rgb[k] = read_png(Path(paths[k]))
        label_ids[k] = LABELS.index(labels[k])
        is_train[k] = "train" in split_tags
    order = np.argsort(np.array(keys), kind="stable")
    arrays = CilpArrays(rgb=rgb, xyza=xyza, labels=label_ids, is_train=is_train, ids=np.array(keys))
    check_not_empty(arrays.is_train, source)
    return arrays.subset(order)


# --- ingesting a raw layout ---------------------------------------------------------------------


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

    Every file is validated before anything is created. On any failure the half-built dataset
    and its media are removed again and an existing dataset `name` is left as it was.
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
    _check_free(fo, name, overwrite)

    token = uuid.uuid4().hex[:12]
    root = media_dir(name, data_dir)
    build = root / token
    dataset = None
    try:
        files = _write_media(scenes, index, build, root, progress)
        # Not persistent until complete: FiftyOne deletes it on its next start if we crash.
        dataset = fo.Dataset(f"{TMP_PREFIX}{name}-{token}")
        dataset.add_group_field("group", default="rgb")
        dataset.add_samples(_samples(fo, scenes, index, is_train, files), progress=progress)
        dataset.info = {
            "raw_dir": str(Path(raw_dir).resolve()),
            "subset": subset,
            "seed": seed,
            MEDIA_INFO_KEY: str(build),
        }
        dataset.save()
        old = _take_name(fo, dataset, name, overwrite)
    except BaseException:
        if dataset is not None:
            dataset.delete()
        _remove_media(build)
        raise
    if old is not None:
        _delete_old(old, name)
    return name


def _write_media(
    scenes: RawScenes, index: np.ndarray, build: Path, root: Path, progress: bool
) -> list[tuple[Path, Path, Path]]:
    """Write each scene's lidar JPG and PCD into build; (rgb, jpg, pcd) paths per scene."""
    files = []
    try:
        build.mkdir(parents=True)
        for i in progress_bar(index, "writing lidar media", progress):
            stem = build / str(scenes.ids[i]).replace("/", "_")
            jpg, pcd = stem.with_suffix(".jpg"), stem.with_suffix(".pcd")
            write_lidar_jpg(jpg, scenes.depth[i])
            write_pcd(pcd, scenes.xyza[i])
            files.append((scenes.rgb_paths[i].resolve(), jpg, pcd))
    except OSError as exc:
        raise UserError(
            f"{root}: cannot write lidar media ({exc.strerror or one_line(exc)})"
        ) from None
    return files


def _samples(
    fo: Any,
    scenes: RawScenes,
    index: np.ndarray,
    is_train: np.ndarray,
    files: list[tuple[Path, Path, Path]],
) -> list[Any]:
    samples = []
    for j, i in enumerate(index):
        group = fo.Group()
        for slice_name, filepath in zip(SLICES, files[j], strict=True):
            sample = fo.Sample(
                filepath=str(filepath),
                group=group.element(slice_name),
                ground_truth=fo.Classification(label=LABELS[scenes.labels[i]]),
                scene_id=str(scenes.ids[i]),
                tags=["train" if is_train[j] else "validation"],
            )
            if slice_name == "lidar_img":
                sample["xyza"] = scenes.xyza[i]
            samples.append(sample)
    return samples


# --- export, import, predictions ---------------------------------------------------------------


def export_dataset(name: str, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Export `name` in FiftyOne's FiftyOneDataset format (the layout of the real export)."""
    fo = import_fiftyone()
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty directory")
    check_output_dir(out.parent, "--out", create=True)
    dataset = _open_dataset(name)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        dataset.export(
            export_dir=str(tmp), dataset_type=fo.types.FiftyOneDataset, progress=progress
        )
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:  # a full disk mid-way: the half export is removed below
        raise write_error("--out", out, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def import_export(export_dir: str | Path, name: str, *, overwrite: bool = False) -> str:
    """Import a FiftyOneDataset export directory as the persistent dataset `name`.

    The media stay in the export directory. With overwrite, an existing `name` is replaced only
    once the import is complete; a failed import leaves it as it was.
    """
    fo = import_fiftyone()
    _check_name(name)
    path = Path(export_dir).expanduser()
    if not (path / "samples.json").is_file():
        raise UserError(f"{path / 'samples.json'}: missing, so {path} is no FiftyOne export")
    _check_free(fo, name, overwrite)
    dataset = _import_dir(path, f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:12]}")
    try:
        # The export's info names the media folder of the dataset it came from: not ours.
        dataset.info = {k: v for k, v in dataset.info.items() if k != MEDIA_INFO_KEY}
        dataset.save()
        old = _take_name(fo, dataset, name, overwrite)
    except BaseException:
        dataset.delete()
        raise
    if old is not None:
        _delete_old(old, name)
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
    dataset = _open_dataset(dataset_name)
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
    group_ids, keys = _scene_keys(dataset, dataset_name)
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
