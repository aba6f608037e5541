"""Raw layout, XYZA, split and the default cached set: everything of the data layer but FiftyOne."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import ANGLES, make_raw
from PIL import Image

from tune_cilp.core.errors import UserError
from tune_cilp.data import default_set, depth_to_xyza, detect_source, load_arrays
from tune_cilp.data.split import DEFAULT_SPLIT, parse_split, split_mask, subset_index


def test_xyza_follows_the_spec_formulas() -> None:
    az = np.array([0.0, 0.3], np.float32)
    ze = np.array([0.0, -0.2], np.float32)
    depth = np.array([[10.0, 50.0], [20.0, 30.0]], np.float32)
    x, y, z, a = depth_to_xyza(depth, az, ze)
    d, azi, zen = 30.0, 0.3, -0.2  # row 1, column 1
    assert x[1, 1] == pytest.approx(d * np.sin(-azi) * np.cos(-zen), rel=1e-6)
    assert y[1, 1] == pytest.approx(d * np.cos(-azi) * np.cos(-zen), rel=1e-6)
    assert z[1, 1] == pytest.approx(d * np.sin(-zen), rel=1e-6)
    assert (x[0, 0], y[0, 0], z[0, 0]) == (0.0, 10.0, 0.0)
    assert a.tolist() == [[1.0, 0.0], [1.0, 1.0]]  # 50.0 = no return


def test_xyza_batches_like_single_maps() -> None:
    depth = np.random.default_rng(0).uniform(1, 50, (3, 64, 64)).astype(np.float32)
    batch = depth_to_xyza(depth, ANGLES, ANGLES)
    assert batch.shape == (3, 4, 64, 64) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[2], depth_to_xyza(depth[2], ANGLES, ANGLES))


def test_split_reproduces_the_seed_sizes() -> None:
    is_train = split_mask(1074, DEFAULT_SPLIT, seed=51)
    assert (is_train.sum(), (~is_train).sum()) == (895, 179)
    np.testing.assert_array_equal(is_train, split_mask(1074, DEFAULT_SPLIT, seed=51))
    assert not np.array_equal(is_train, split_mask(1074, DEFAULT_SPLIT, seed=52))
    assert split_mask(10, {"train": 1, "validation": 1}, seed=0).sum() == 5


@pytest.mark.parametrize("text", ["train=0.8", "train=0.8,validation=x", "train=-1,validation=1"])
def test_bad_split_fractions(text: str) -> None:
    with pytest.raises(UserError, match="split"):
        parse_split(text)


def test_subset_is_seeded_and_sorted() -> None:
    index = subset_index(100, 0.1, seed=3)
    assert len(index) == 10 and np.all(np.diff(index) > 0)
    np.testing.assert_array_equal(index, subset_index(100, 0.1, seed=3))
    with pytest.raises(UserError, match="subset"):
        subset_index(100, 1.5)


def test_load_raw_pairs_files_by_index(tiny_raw: Path, tiny_arrays) -> None:
    n = len(list((tiny_raw / "cubes" / "rgb").iterdir()))
    n += len(list((tiny_raw / "spheres" / "rgb").iterdir()))
    assert len(tiny_arrays) == n
    assert list(tiny_arrays.ids) == sorted(tiny_arrays.ids)
    assert tiny_arrays.labels.tolist() == [int(i.startswith("spheres")) for i in tiny_arrays.ids]
    for k in (0, n - 1):
        label, index = tiny_arrays.ids[k].split("/")
        png = np.asarray(Image.open(tiny_raw / label / "rgb" / f"{index}.png").convert("RGBA"))
        np.testing.assert_array_equal(tiny_arrays.rgb[k], png.transpose(2, 0, 1))
        depth = np.load(tiny_raw / label / "lidar" / f"{index}.npy")
        angles = [np.load(tiny_raw / label / f"{a}.npy") for a in ("azimuth", "zenith")]
        np.testing.assert_array_equal(tiny_arrays.xyza[k], depth_to_xyza(depth, *angles))
    np.testing.assert_array_equal(tiny_arrays.is_train, split_mask(n, DEFAULT_SPLIT, seed=51))


def test_load_raw_subset_and_split(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", per_class=10)
    arrays = load_arrays(raw, subset=0.5, split={"train": 0.5, "validation": 0.5}, seed=1)
    assert len(arrays) == 10 and arrays.is_train.sum() == 5
    again = load_arrays(str(raw), subset=0.5, split={"train": 0.5, "validation": 0.5}, seed=1)
    np.testing.assert_array_equal(arrays.ids, again.ids)
    with pytest.raises(UserError, match="split 'validation' is empty"):
        load_arrays(raw, split={"train": 1, "validation": 0})


def test_detect_source(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", per_class=1)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "samples.json").write_text("{}")
    assert detect_source(raw) == "raw"
    assert detect_source(tmp_path / "export") == "export"
    assert detect_source("some_dataset_name") == "fiftyone"
    assert detect_source("synthetic:balanced") == "synthetic"
    with pytest.raises(UserError, match="no such directory"):
        detect_source(tmp_path / "missing")
    with pytest.raises(UserError, match="neither a raw layout"):
        detect_source(tmp_path)


def test_default_set_is_generated_once_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(default_set, "DEFAULT_SCENES", 24)  # the real 1,074 are for benchmarks
    first = load_arrays(data_dir=tmp_path)
    raw = default_set.default_raw_dir(tmp_path)
    assert raw.is_dir() and len(first) == 24
    cache = raw.parent / f"{raw.name}.arrays-v{default_set.CACHE_VERSION}.npz"
    assert cache.is_file()

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached arrays were not used")

    monkeypatch.setattr(default_set, "read_raw", must_not_run)
    second = load_arrays(data_dir=tmp_path)
    for field in ("rgb", "xyza", "labels", "is_train", "ids"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))

    monkeypatch.undo()
    monkeypatch.setattr(default_set, "DEFAULT_SCENES", 24)
    cache.write_bytes(b"not an npz")  # a damaged cache is rebuilt, not an error
    np.testing.assert_array_equal(load_arrays(data_dir=tmp_path).xyza, first.xyza)


def test_data_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNE_CILP_DATA_DIR", str(tmp_path))
    assert default_set.default_data_dir() == tmp_path
    assert default_set.default_data_dir(tmp_path / "x") == tmp_path / "x"


def test_os_files_are_ignored_like_dot_files(tmp_path: Path) -> None:
    clean = load_arrays(make_raw(tmp_path / "clean", per_class=3))
    raw = make_raw(tmp_path / "raw", per_class=3)
    for folder in (raw, raw / "cubes", raw / "cubes" / "rgb", raw / "spheres" / "lidar"):
        for name in ("Thumbs.db", "desktop.ini", "THUMBS.DB", ".DS_Store"):
            (folder / name).write_bytes(b"\0\1 os file")
    (raw / "cubes" / "lidar" / ".thumbnails").mkdir()
    arrays = load_arrays(raw)
    for field in ("ids", "rgb", "xyza", "labels", "is_train"):
        np.testing.assert_array_equal(getattr(arrays, field), getattr(clean, field))


def _folder(rel: str):
    return lambda raw: (raw / rel).mkdir()


def _file_for_folder(rel: str):
    def mutate(raw: Path) -> None:
        shutil.rmtree(raw / rel)
        (raw / rel).write_text("a file\n")

    return mutate


def _folder_for_file(rel: str):
    def mutate(raw: Path) -> None:
        (raw / rel).unlink()
        (raw / rel).mkdir()

    return mutate


# (case, change to a valid raw layout, path the error names, the rest of the one-line message)
WRONG_KIND = [
    (
        "folder among the PNGs",
        _folder("cubes/rgb/extra"),
        "cubes/rgb/extra",
        "unexpected folder (expected NNNN.png)",
    ),
    (
        "folder named like a PNG",
        _folder_for_file("spheres/rgb/0001.png"),
        "spheres/rgb/0001.png",
        "unexpected folder (expected NNNN.png)",
    ),
    (
        "folder among the depth maps",
        _folder("spheres/lidar/0009.npy"),
        "spheres/lidar/0009.npy",
        "unexpected folder (expected NNNN.npy)",
    ),
    (
        "folder for the angles",
        _folder_for_file("cubes/azimuth.npy"),
        "cubes/azimuth.npy",
        "unexpected folder (expected a .npy file)",
    ),
    (
        "file among the PNGs",
        lambda raw: (raw / "cubes/rgb/notes.txt").write_text("x"),
        "cubes/rgb/notes.txt",
        "unexpected file (expected NNNN.png)",
    ),
    (
        "file for the rgb folder",
        _file_for_folder("cubes/rgb"),
        "cubes/rgb",
        "a file, but a folder is expected here",
    ),
    (
        "file for a class folder",
        _file_for_folder("spheres"),
        "spheres",
        "a file, but a class folder is expected here",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "rel", "problem"), [c[1:] for c in WRONG_KIND], ids=[c[0] for c in WRONG_KIND]
)
def test_a_folder_or_file_in_the_wrong_place_is_named(
    tmp_path: Path, mutate, rel: str, problem: str
) -> None:
    raw = make_raw(tmp_path / "raw", per_class=2)
    mutate(raw)
    with pytest.raises(UserError) as info:
        load_arrays(raw)
    assert str(info.value) == f"{raw / rel}: {problem}"


def test_default_set_has_the_seed_exports_counts_and_balanced_is_one_option_away(
    tmp_path: Path,
) -> None:
    # The balanced set first: what an older version cached as its default must not be taken
    # for the new default.
    balanced = load_arrays("synthetic:balanced", data_dir=tmp_path)
    default = load_arrays(data_dir=tmp_path)
    assert int((default.labels == 0).sum()) == 999 and int((default.labels == 1).sum()) == 75
    assert (int(default.is_train.sum()), int((~default.is_train).sum())) == (895, 179)
    assert np.array_equal(load_arrays("synthetic:seed", data_dir=tmp_path).ids, default.ids)
    assert int((balanced.labels == 0).sum()) == int((balanced.labels == 1).sum()) == 537
    assert (int(balanced.is_train.sum()), int((~balanced.is_train).sum())) == (895, 179)
    assert default_set.default_raw_dir(tmp_path, "seed") != default_set.default_raw_dir(
        tmp_path, "balanced"
    )
    with pytest.raises(UserError, match=r"synthetic:nope: unknown synthetic set \(known: "):
        load_arrays("synthetic:nope", data_dir=tmp_path)
