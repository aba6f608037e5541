"""FiftyOne side of the data layer: ingestion, loading, export/import round trip, predictions.

One module so the MongoDB start-up (seconds) is paid once; every dataset made here is deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import make_raw
from helpers import run_data_cli as run_cli

from tune_cilp.core.errors import UserError
from tune_cilp.core.fiftyone_env import import_fiftyone
from tune_cilp.data import (
    LABELS,
    add_predictions,
    export_dataset,
    import_export,
    ingest_raw,
    load_arrays,
)
from tune_cilp.data import fiftyone_data as fio
from tune_cilp.data.fiftyone_data import TMP_PREFIX

NAME = "test_data_tiny"


@pytest.fixture(scope="module")
def fo():
    fo = import_fiftyone()
    yield fo
    for name in fo.list_datasets():
        if name.startswith("test_data_"):
            fo.delete_dataset(name)


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fo_media")


@pytest.fixture(scope="module")
def dataset(fo, tiny_raw: Path, media_root: Path):
    ingest_raw(tiny_raw, NAME, data_dir=media_root, progress=False)
    return fo.load_dataset(NAME)


def read_pcd_points(path: Path) -> np.ndarray:
    """The XYZ points of a binary PCD file with fields x y z, float32 (N, 3)."""
    data = path.read_bytes()
    end = data.index(b"DATA binary\n") + len(b"DATA binary\n")
    header = data[:end].decode("ascii").splitlines()
    assert "FIELDS x y z" in header and "TYPE F F F" in header
    points = np.frombuffer(data[end:], dtype="<f4").reshape(-1, 3)
    assert f"POINTS {len(points)}" in header
    return points


def assert_same(a, b) -> None:
    """Two CilpArrays hold the same scenes (aligned by id) with the same split."""
    order_a, order_b = np.argsort(a.ids), np.argsort(b.ids)
    for field in ("ids", "rgb", "xyza", "labels", "is_train"):
        np.testing.assert_array_equal(getattr(a, field)[order_a], getattr(b, field)[order_b])


def test_ingest_builds_the_seed_structure(dataset, tiny_arrays) -> None:
    n = len(tiny_arrays)
    assert dataset.persistent and dataset.media_type == "group"
    assert dataset.default_group_slice == "rgb"
    assert dataset.group_media_types == {
        "rgb": "image",
        "lidar_img": "image",
        "lidar_pcd": "point-cloud",
    }
    counts = tiny_arrays.counts()
    for slice_name in ("rgb", "lidar_img", "lidar_pcd"):
        view = dataset.select_group_slices(slice_name)
        assert len(view) == n
        assert view.count_sample_tags() == {k: sum(v.values()) for k, v in counts.items()}
        assert view.count_values("ground_truth.label") == {
            label: counts["train"][label] + counts["validation"][label] for label in LABELS
        }
        assert sorted(view.values("scene_id")) == sorted(tiny_arrays.ids)
    rgb = dataset.select_group_slices("rgb").first()
    assert rgb.filepath.endswith(f"{rgb.scene_id.replace('/', '/rgb/')}.png")


def test_lidar_media_match_the_depth(dataset, tiny_raw: Path, tiny_arrays) -> None:
    from PIL import Image

    sample = dataset.select_group_slices("lidar_img").first()
    k = list(tiny_arrays.ids).index(sample.scene_id)
    np.testing.assert_array_equal(sample.xyza, tiny_arrays.xyza[k])
    label, index = sample.scene_id.split("/")
    depth = np.load(tiny_raw / label / "lidar" / f"{index}.npy")
    jpg = np.asarray(Image.open(sample.filepath))
    assert jpg.shape == (64, 64) and np.abs(jpg.astype(int) - depth.astype(np.uint8)).max() <= 8
    pcd = dataset.select_group_slices("lidar_pcd").match({"scene_id": sample.scene_id}).first()
    points = read_pcd_points(Path(pcd.filepath))
    np.testing.assert_array_equal(points, tiny_arrays.xyza[k, :3].reshape(3, -1).T)


def test_split_tags_equal_fiftyone_random_split(dataset) -> None:
    import fiftyone.utils.random as four

    rgb = dataset.select_group_slices("rgb")
    train, _ = four.random_split(rgb, [0.75, 0.15], seed=51)
    assert set(train.values("scene_id")) == set(rgb.match_tags("train").values("scene_id"))


def test_load_from_the_dataset_equals_the_raw_load(dataset, tiny_arrays) -> None:
    assert_same(load_arrays(NAME), tiny_arrays)


def test_export_import_round_trip(fo, dataset, tiny_arrays, tmp_path: Path) -> None:
    out = export_dataset(NAME, tmp_path / "export", progress=False)
    assert {p.name for p in out.iterdir()} >= {"samples.json", "metadata.json", "data"}
    assert_same(load_arrays(out), tiny_arrays)
    assert not [n for n in fo.list_datasets() if n.startswith("tune_cilp-tmp-")]

    imported = fo.load_dataset(import_export(out, "test_data_imported"))
    assert imported.group_slices == dataset.group_slices
    assert imported.default_group_slice == "rgb"
    assert set(imported.get_field_schema()) == set(dataset.get_field_schema())
    for slice_name in dataset.group_slices:
        a, b = (d.select_group_slices(slice_name) for d in (dataset, imported))
        assert a.count_sample_tags() == b.count_sample_tags()
        assert sorted(zip(a.values("scene_id"), a.values("ground_truth.label"), strict=True)) == (
            sorted(zip(b.values("scene_id"), b.values("ground_truth.label"), strict=True))
        )
    assert_same(load_arrays("test_data_imported"), tiny_arrays)
    with pytest.raises(UserError, match="already exists"):
        export_dataset(NAME, out)


def test_keys_without_scene_id_come_from_the_rgb_path(fo, dataset, tiny_arrays) -> None:
    clone = dataset.clone("test_data_no_scene_id")
    clone.delete_sample_field("scene_id")
    assert_same(load_arrays("test_data_no_scene_id"), tiny_arrays)
    add_predictions("test_data_no_scene_id", "pred", tiny_arrays.ids[:2], [0, 1], [0.2, 0.9])
    assert clone.select_group_slices("lidar_pcd").exists("pred").count() == 2


def test_add_predictions_reaches_every_slice(dataset, tiny_arrays) -> None:
    ids = tiny_arrays.ids[:3]
    written = add_predictions(NAME, "predictions", ids, [1, "cubes", 0], [0.9, 0.2, 0.4])
    assert written == 3 * 3
    for slice_name in dataset.group_slices:
        view = dataset.select_group_slices(slice_name).exists("predictions")
        got = dict(zip(view.values("scene_id"), view.values("predictions.label"), strict=True))
        assert got == {ids[0]: "spheres", ids[1]: "cubes", ids[2]: "cubes"}
    conf = dataset.select_group_slices("rgb").match({"scene_id": ids[0]}).first()
    assert conf.predictions.confidence == pytest.approx(0.9)
    with pytest.raises(UserError, match="not in"):
        add_predictions(NAME, "predictions", ["cubes/9999"], [0], [0.5])


def test_subset_and_split_options(fo, tiny_raw: Path, media_root: Path) -> None:
    name = ingest_raw(
        tiny_raw,
        "test_data_subset",
        subset=0.5,
        split={"train": 0.5, "validation": 0.5},
        seed=3,
        data_dir=media_root,
        progress=False,
    )
    arrays = load_arrays(name)
    assert len(arrays) == len(fo.load_dataset(name)) and arrays.is_train.sum() == len(arrays) / 2
    assert_same(
        arrays, load_arrays(tiny_raw, subset=0.5, split={"train": 0.5, "validation": 0.5}, seed=3)
    )


def test_existing_name_needs_overwrite(dataset, tiny_raw: Path, media_root: Path) -> None:
    with pytest.raises(UserError, match="already exists"):
        ingest_raw(tiny_raw, NAME, data_dir=media_root, progress=False)


def test_failed_ingestion_leaves_nothing(
    fo, tmp_path: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_raw(tmp_path / "raw", per_class=3)

    def broken_add_samples(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fo.Dataset, "add_samples", broken_add_samples)
    with pytest.raises(OSError, match="disk full"):
        ingest_raw(raw, "test_data_broken", data_dir=media_root, progress=False)
    assert not fo.dataset_exists("test_data_broken")
    assert not fio.media_dir("test_data_broken", media_root).exists()
    assert not temporary_datasets(fo)


def test_bad_datasets_are_user_errors(fo, dataset) -> None:
    clone = dataset.clone("test_data_bad_label")
    sample = clone.select_group_slices("rgb").first()
    sample.ground_truth.label = "cylinders"
    sample.save()
    with pytest.raises(UserError, match="'cylinders' is not one of cubes, spheres"):
        load_arrays("test_data_bad_label")
    clone.untag_samples("validation")
    clone.select_group_slices("lidar_pcd").untag_samples("validation")
    sample.ground_truth.label = "cubes"
    sample.save()
    with pytest.raises(
        UserError, match="needs exactly one of the tags|split 'validation' is empty"
    ):
        load_arrays("test_data_bad_label")
    with pytest.raises(UserError, match="no FiftyOne dataset"):
        load_arrays("test_data_does_not_exist")


def test_unreadable_export_is_a_user_error(fo, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "metadata.json").write_text('{"name": "x", "media_type": "group"}')
    (tmp_path / "samples.json").write_text("not json")
    with pytest.raises(UserError, match="samples.json: cannot import"):
        load_arrays(tmp_path)
    assert not [n for n in fo.list_datasets() if n.startswith("tune_cilp-tmp-")]


# --- replacing a dataset (--overwrite) ---------------------------------------------------------

KEEP = "test_data_keep"  # the dataset every failed overwrite must leave exactly as it was


def stored_state(fo, name: str) -> dict:
    """What dataset `name` holds: per slice its samples' values (ids included, so a rebuild
    shows) and the SHA-256 of each media file, plus its info and every file of its media folder."""
    dataset = fo.load_dataset(name)
    dataset.reload()  # another process may have written to the database
    state: dict = {"info": dict(dataset.info), "persistent": dataset.persistent}
    fields = ["id", "filepath", "scene_id", "ground_truth.label", "tags", "group.id"]
    for slice_name in dataset.group_slices:
        view = dataset.select_group_slices(slice_name)
        rows = list(zip(*view.values(fields), strict=True))
        if slice_name == "lidar_img":
            rows = [
                (*r, hashlib.sha256(x.tobytes()).hexdigest())
                for r, x in zip(rows, view.values("xyza"), strict=True)
            ]
        media = {
            p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in view.values("filepath")
        }
        state[slice_name] = (sorted(rows), media)
    root = Path(dataset.info[fio.MEDIA_INFO_KEY]).parent
    state["media folder"] = sorted(
        (str(p), p.read_bytes() if p.is_file() else b"dir") for p in root.rglob("*")
    )
    return state


def temporary_datasets(fo) -> list[str]:
    return [n for n in fo.list_datasets() if n.startswith(TMP_PREFIX)]


@pytest.fixture(scope="module")
def keep(fo, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The dataset KEEP, ingested from a tiny raw layout, and its stored state."""
    data_dir = tmp_path_factory.mktemp("keep_data")
    raw = make_raw(tmp_path_factory.mktemp("keep_raw") / "raw", per_class=3)
    ingest_raw(raw, KEEP, data_dir=data_dir, progress=False)
    return {"raw": raw, "data_dir": data_dir, "state": stored_state(fo, KEEP)}


def _file_at(rel: str) -> Callable[[Path], tuple[list[str], str]]:
    """A regular file where the media must go: a real fault even for root, unlike chmod."""

    def fault(tmp: Path) -> tuple[list[str], str]:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text("in the way\n")
        media = tmp / "data" / "fiftyone" / KEEP
        return [
            "--data-dir",
            str(tmp / "data"),
        ], f"{media}: cannot write lidar media (Not a directory)"

    return fault


def _corrupt_png(tmp: Path) -> tuple[list[str], str]:
    raw = make_raw(tmp / "bad_raw", per_class=2)
    (raw / "cubes" / "rgb" / "0001.png").write_bytes(b"not a png")
    return [], f"{raw / 'cubes' / 'rgb' / '0001.png'}: corrupt or unreadable PNG"


# (case, fault under tmp_path -> (extra ingest args, the start of the one error line))
OVERWRITE_FAULTS = [
    ("data dir is a file", _file_at("data")),
    ("media parent is a file", _file_at("data/fiftyone")),
    ("media folder is a file", _file_at(f"data/fiftyone/{KEEP}")),
    ("corrupt raw file", _corrupt_png),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault", [c[1] for c in OVERWRITE_FAULTS], ids=[c[0] for c in OVERWRITE_FAULTS]
)
def test_failed_overwrite_keeps_the_old_dataset(fo, keep: dict, tmp_path: Path, fault) -> None:
    extra, expected = fault(tmp_path)
    raw = tmp_path / "bad_raw" if (tmp_path / "bad_raw").is_dir() else keep["raw"]
    in_the_way = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = run_cli("ingest", raw, "--name", KEEP, "--overwrite", *extra)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), result.stderr
    assert stored_state(fo, KEEP) == keep["state"]
    assert not temporary_datasets(fo)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == in_the_way


def test_failure_after_writing_media_keeps_the_old_dataset(
    fo, keep: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_add_samples(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fo.Dataset, "add_samples", broken_add_samples)
    with pytest.raises(OSError, match="disk full"):  # same data dir: media were written first
        ingest_raw(keep["raw"], KEEP, overwrite=True, data_dir=keep["data_dir"], progress=False)
    assert stored_state(fo, KEEP) == keep["state"]
    assert not temporary_datasets(fo)


def test_failed_import_overwrite_keeps_the_old_dataset(fo, keep: dict, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "metadata.json").write_text('{"name": "x", "media_type": "group"}')
    (tmp_path / "samples.json").write_text("not json")
    with pytest.raises(UserError, match="samples.json: cannot import"):
        import_export(tmp_path, KEEP, overwrite=True)
    assert stored_state(fo, KEEP) == keep["state"]
    assert not temporary_datasets(fo)


@pytest.mark.slow
def test_overwrite_replaces_contents_and_media(fo, tmp_path: Path) -> None:
    name, data_dir = "test_data_replace", tmp_path / "data"
    small = make_raw(tmp_path / "small", per_class=2, seed=1)
    ingest_raw(small, name, data_dir=data_dir, progress=False)
    before = stored_state(fo, name)
    old_build = Path(before["info"][fio.MEDIA_INFO_KEY])

    large = make_raw(tmp_path / "large", per_class=3, seed=2)
    result = run_cli("ingest", large, "--name", name, "--overwrite", "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    after = stored_state(fo, name)
    assert len(after["rgb"][0]) == 6 and after["info"]["raw_dir"] == str(large.resolve())
    assert after["persistent"] and not temporary_datasets(fo)
    assert not {r[0] for r in after["lidar_img"][0]} & {r[0] for r in before["lidar_img"][0]}
    assert_same(load_arrays(name), load_arrays(large))
    assert not old_build.exists()  # the replaced dataset's media went with it
    new_build = Path(after["info"][fio.MEDIA_INFO_KEY])
    assert [p.name for p in new_build.parent.iterdir()] == [new_build.name]
    assert set(after["lidar_pcd"][1]) == {str(p) for p in new_build.glob("*.pcd")}

    export = export_dataset(name, tmp_path / "export", progress=False)
    import_export(export, name, overwrite=True)  # an import keeps its media in the export
    assert not new_build.exists() and not new_build.parent.exists()
    assert_same(load_arrays(name), load_arrays(large))
    assert not temporary_datasets(fo)
