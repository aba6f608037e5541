"""The synthetic generator: layout, determinism, atomic output, and the geometry of the scenes.

The geometry is that of docs/DATA.md (Raw layout, XYZA, Scenes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tune_cilp.core.errors import UserError
from tune_cilp.data import LABELS, MAX_RANGE, synthetic
from tune_cilp.data.synthetic import (
    AZIMUTH,
    CAMERA_FOV_DEG,
    ZENITH,
    cast,
    generate_raw,
    render_camera,
    render_lidar,
    sample_scenes,
)

SEED = 5
N_RAW = 8  # 4 cubes + 4 spheres on disk
N_STATS = 60  # scenes rendered in memory for the geometry statistics


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_raw(tmp_path_factory.mktemp("synthetic") / "raw", scenes=N_RAW, seed=SEED)


@pytest.fixture(scope="module")
def scenes() -> synthetic.Scenes:
    return sample_scenes(N_STATS, seed=11)


@pytest.fixture(scope="module")
def depth(scenes: synthetic.Scenes) -> dict[str, np.ndarray]:
    return {shape: render_lidar(shape, scenes) for shape in LABELS}


def _xyz(depth: np.ndarray) -> np.ndarray:
    """docs/DATA.md (XYZA), written out independently of the package: (..., 64, 64, 3)."""
    az = AZIMUTH[:, None].astype(np.float64)
    ze = ZENITH[None, :].astype(np.float64)
    d = depth.astype(np.float64)
    return np.stack(
        [d * np.sin(-az) * np.cos(-ze), d * np.cos(-az) * np.cos(-ze), d * np.sin(-ze)], axis=-1
    )


def _lidar_rays() -> np.ndarray:
    """Unit directions (4096, 3) of every LiDAR beam: the XYZA formulas at depth 1."""
    return _xyz(np.ones((64, 64))).reshape(-1, 3)


def _camera_rays() -> np.ndarray:
    """Unit pinhole rays (4096, 3) through the pixel centres: columns +x, rows -z, axis +y."""
    focal = 32 / np.tan(np.radians(CAMERA_FOV_DEG) / 2)
    v, u = np.meshgrid(np.arange(64) + 0.5 - 32, np.arange(64) + 0.5 - 32, indexing="ij")
    rays = np.stack([u, np.full_like(u, focal), -v], axis=-1).reshape(-1, 3)
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def _spans(mask: np.ndarray) -> np.ndarray:
    """Largest extent in rows or columns of each (64, 64) mask in a batch."""
    return np.maximum(mask.any(axis=2).sum(axis=1), mask.any(axis=1).sum(axis=1))


def _centroids(mask: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    w = mask.astype(np.float64) if weight is None else weight * mask
    rows, cols = np.mgrid[:64, :64]
    total = w.sum(axis=(1, 2))
    return (w * rows).sum(axis=(1, 2)) / total, (w * cols).sum(axis=(1, 2)) / total


# --- files on disk ------------------------------------------------------------------------------


def test_layout_shapes_and_dtypes(raw: Path) -> None:
    grid = np.deg2rad(np.arange(-16, 16, 0.5)).astype(np.float32)
    for shape in LABELS:
        folder = raw / shape
        contents = sorted(p.name for p in folder.iterdir())
        assert contents == ["azimuth.npy", "lidar", "rgb", "zenith.npy"]
        for name in ("azimuth.npy", "zenith.npy"):
            angles = np.load(folder / name)
            assert angles.dtype == np.float32 and angles.shape == (64,)
            np.testing.assert_array_equal(angles, grid)
        names = [f"{i:04d}" for i in range(N_RAW // 2)]
        assert sorted(p.stem for p in (folder / "rgb").iterdir()) == names
        assert sorted(p.stem for p in (folder / "lidar").iterdir()) == names
        for name in names:
            depth = np.load(folder / "lidar" / f"{name}.npy")
            assert depth.dtype == np.float32 and depth.shape == (64, 64)
            with Image.open(folder / "rgb" / f"{name}.png") as im:
                assert im.format == "PNG" and im.mode == "RGBA" and im.size == (64, 64)
                rgba = np.asarray(im)
            assert (rgba[..., 3] == 255).all()
            assert (depth < MAX_RANGE).any() and rgba[..., :3].any()
    assert not [p for p in raw.parent.iterdir() if p.name.startswith(".")]  # no temp dir left


def test_same_arguments_give_byte_identical_files(raw: Path, tmp_path: Path) -> None:
    again = generate_raw(tmp_path / "again", scenes=N_RAW, seed=SEED)
    files = sorted(p.relative_to(raw) for p in raw.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (raw / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = generate_raw(tmp_path / "other", scenes=N_RAW, seed=SEED + 1)
    first = "cubes/lidar/0000.npy"
    assert (raw / first).read_bytes() != (other / first).read_bytes()


def test_sphere_fraction_sets_class_counts(tmp_path: Path) -> None:
    out = generate_raw(tmp_path / "r", scenes=5, seed=0, sphere_fraction=0.2)
    assert len(list((out / "cubes/rgb").iterdir())) == 4
    assert len(list((out / "spheres/lidar").iterdir())) == 1
    only_cubes = generate_raw(tmp_path / "c", scenes=2, seed=0, sphere_fraction=0.0)
    assert len(list((only_cubes / "cubes/lidar").iterdir())) == 2
    assert list((only_cubes / "spheres/lidar").iterdir()) == []


def test_index_i_shares_the_position_across_classes(raw: Path) -> None:
    # The sphere is the cube's inscribed sphere: same centre => sphere hits within the cube hits.
    for i in range(N_RAW // 2):
        sphere = np.load(raw / "spheres/lidar" / f"{i:04d}.npy") < MAX_RANGE
        cube = np.load(raw / "cubes/lidar" / f"{i:04d}.npy") < MAX_RANGE
        assert sphere.sum() > 50 and not (sphere & ~cube).any()
    one = np.load(raw / "spheres/lidar/0000.npy") < MAX_RANGE
    two = np.load(raw / "spheres/lidar/0001.npy") < MAX_RANGE
    assert not np.array_equal(one, two)


def test_xyza_of_hits_lies_on_the_object_surface(raw: Path) -> None:
    truth = sample_scenes(N_RAW // 2, SEED)
    for i in range(N_RAW // 2):
        for shape in LABELS:
            depth = np.load(raw / shape / "lidar" / f"{i:04d}.npy")
            points = _xyz(depth)[depth < MAX_RANGE] - truth.centers[i]
            if shape == "spheres":
                np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.5, atol=1e-3)
            else:  # in the cube's frame every hit has one coordinate at +-1.5, none beyond
                local = np.abs(points @ truth.rotations[i])
                np.testing.assert_allclose(local.max(axis=1), 1.5, atol=1e-3)


def test_scene_positions_fill_the_spec_box() -> None:
    centers = sample_scenes(400, 2).centers
    x, y, z = centers.T
    assert (np.abs(x) <= 4).all() and (np.abs(z) <= 4).all() and ((y >= 21) & (y <= 29)).all()
    assert min(np.ptp(x), np.ptp(z)) > 7 and np.ptp(y) > 7


def test_prefix_of_the_scene_list_does_not_depend_on_its_length() -> None:
    short, long = sample_scenes(3, 9), sample_scenes(50, 9)
    np.testing.assert_array_equal(short.centers, long.centers[:3])
    np.testing.assert_array_equal(short.rotations, long.rotations[:3])
    np.testing.assert_array_equal(short.colors, long.colors[:3])


# --- bad arguments and atomic output ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scenes": 0},
        {"scenes": -3},
        {"scenes": 2.5},
        {"scenes": True},
        {"scenes": 30_000},
        {"sphere_fraction": -0.1},
        {"sphere_fraction": 1.5},
        {"sphere_fraction": float("nan")},
        {"seed": -1},
        {"seed": "x"},
    ],
)
def test_bad_arguments_raise_user_error_and_write_nothing(tmp_path: Path, kwargs: dict) -> None:
    args = {"scenes": 4, "seed": 0, **kwargs}
    with pytest.raises(UserError):
        generate_raw(tmp_path / "out", **args)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_output_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not an empty directory"):
        generate_raw(out, scenes=2, seed=0)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_raw(empty, scenes=2, seed=0) == empty
    assert (empty / "spheres/rgb/0000.png").exists()


def test_a_failure_midway_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    def broken(shape: str, scenes: synthetic.Scenes, supersample: int = 3) -> np.ndarray:
        if shape == "spheres":
            raise RuntimeError("disk full")
        return render_camera(shape, scenes, supersample)

    monkeypatch.setattr(synthetic, "render_camera", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_raw(tmp_path / "out", scenes=4, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_raw(tmp_path / "out", scenes=2, seed=0, progress=True)
    assert "scene" in capsys.readouterr().err


# --- geometry of docs/DATA.md, XYZA and Scenes -------------------------------------------------


def test_misses_are_exactly_max_range_and_hits_are_in_range(depth: dict[str, np.ndarray]) -> None:
    for shape in LABELS:
        d = depth[shape]
        assert d.dtype == np.float32 and d.shape == (N_STATS, 64, 64)
        hit = d < MAX_RANGE
        assert (d[~hit] == np.float32(50.0)).all() and (~hit).sum() > hit.sum()
        assert hit.any(axis=(1, 2)).all()
        assert d[hit].min() >= 18.0 and d[hit].max() <= 31.0, shape


def test_windowed_rendering_equals_casting_the_whole_grid(
    scenes: synthetic.Scenes, depth: dict[str, np.ndarray]
) -> None:
    # The renderers cast rays only near each object; the full grid must give the same pictures.
    few = scenes[:12]
    for shape in LABELS:
        t, _ = cast(shape, few, _lidar_rays())
        full = np.minimum(t, MAX_RANGE).astype(np.float32).reshape(-1, 64, 64)
        np.testing.assert_allclose(depth[shape][:12], full, atol=1e-4)
        _, lit = cast(shape, few, _camera_rays())
        image = render_camera(shape, few, supersample=1)
        shown = image[..., :3].any(axis=-1)
        np.testing.assert_array_equal(shown, lit.reshape(-1, 64, 64) > 1e-3)


def test_silhouettes_span_the_spec_number_of_beams(depth: dict[str, np.ndarray]) -> None:
    sphere = _spans(depth["spheres"] < MAX_RANGE)
    cube = _spans(depth["cubes"] < MAX_RANGE)
    assert sphere.min() >= 11 and sphere.max() <= 17 and 13 <= sphere.mean() <= 15
    assert 17 <= cube.mean() <= 25 and cube.max() <= 30
    assert (cube >= sphere).all()  # same centre, and the cube contains the sphere


def test_camera_is_the_lidar_grid_rotated_by_90_degrees(
    scenes: synthetic.Scenes, depth: dict[str, np.ndarray]
) -> None:
    # Silhouette centroids: camera right -> smaller LiDAR row, camera down -> larger LiDAR column,
    # one camera pixel ~ 1.57 beams near the centre.
    t, _ = cast("spheres", scenes, _camera_rays())
    cam_rows, cam_cols = _centroids(np.isfinite(t).reshape(-1, 64, 64))
    lidar_rows, lidar_cols = _centroids(depth["spheres"] < MAX_RANGE)
    np.testing.assert_allclose(lidar_rows, 32 - 1.57 * (cam_cols + 0.5 - 32), atol=1.5)
    np.testing.assert_allclose(lidar_cols, 32 + 1.57 * (cam_rows + 0.5 - 32), atol=1.5)
    # Whole-image check on the rotated silhouette: rot90(camera) overlaps the LiDAR blob.
    sil = np.isfinite(t).reshape(-1, 64, 64)
    rotated_rows, rotated_cols = _centroids(np.rot90(sil, k=1, axes=(1, 2)))
    assert np.corrcoef(rotated_rows, lidar_rows)[0, 1] > 0.99
    assert np.corrcoef(rotated_cols, lidar_cols)[0, 1] > 0.99


def test_spheres_show_only_a_lit_cap_towards_the_upper_left(scenes: synthetic.Scenes) -> None:
    t, _ = cast("spheres", scenes, _camera_rays())
    silhouette = np.isfinite(t).reshape(-1, 64, 64)
    rgba = render_camera("spheres", scenes)
    assert rgba.dtype == np.uint8 and rgba.shape == (N_STATS, 64, 64, 4)
    assert (rgba[..., 3] == 255).all()
    brightness = rgba[..., :3].max(axis=-1).astype(np.float64)
    lit = brightness > 30
    assert (lit.sum(axis=(1, 2)) > 0).all()
    assert (lit.sum(axis=(1, 2)) < 0.8 * silhouette.sum(axis=(1, 2))).all()  # lit part only
    assert _spans(lit).min() >= 4 and _spans(lit).max() <= 10  # a small crescent or cap
    assert _spans(silhouette).min() >= 6 and _spans(silhouette).max() <= 12
    sil_rows, sil_cols = _centroids(silhouette)
    lit_rows, lit_cols = _centroids(lit, brightness)
    assert (lit_rows < sil_rows - 0.5).all() and (lit_cols < sil_cols - 0.5).all()
    for k in range(N_STATS):  # the top of the crescent reaches to the right of the centre
        rows, cols = np.nonzero(lit[k])
        assert cols[rows <= rows.min() + 1].max() > sil_cols[k]
    # Black background: only pixels touching the silhouette (partly covered edges) may be lit.
    assert not rgba[..., :3][~_grow(silhouette)].any()


def _grow(mask: np.ndarray) -> np.ndarray:
    """Dilate a batch of (64, 64) masks by one pixel, diagonals included."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    rows = out.copy()
    out[:, :, 1:] |= rows[:, :, :-1]
    out[:, :, :-1] |= rows[:, :, 1:]
    return out


def test_index_i_shares_the_colour_across_classes(scenes: synthetic.Scenes) -> None:
    # Every lit pixel is the scene's colour times a brightness: compare the brightest pixels'
    # chromaticity in linear light (sRGB decoded) between the sphere and the cube of scene i.
    def chroma(rgba: np.ndarray) -> np.ndarray:
        flat = rgba[..., :3].reshape(len(rgba), -1, 3).astype(np.float64) / 255
        top = flat[np.arange(len(flat)), flat.sum(axis=-1).argmax(axis=1)]
        linear = np.where(top <= 0.04045, top / 12.92, ((top + 0.055) / 1.055) ** 2.4)
        return linear / np.linalg.norm(linear, axis=1, keepdims=True).clip(1e-9)

    sphere, cube = chroma(render_camera("spheres", scenes)), chroma(render_camera("cubes", scenes))
    visible = render_camera("cubes", scenes)[..., :3].max(axis=(1, 2, 3)) > 100
    assert visible.mean() > 0.75
    similarity = sphere @ cube.T  # cosine between scene i's sphere colour and scene j's cube colour
    assert (np.diag(similarity)[visible] > 0.995).all()
    assert (similarity[visible].argmax(axis=1) == np.nonzero(visible)[0]).mean() > 0.8


def test_cubes_show_lit_faces_of_different_brightness(scenes: synthetic.Scenes) -> None:
    rgba = render_camera("cubes", scenes, supersample=1)  # no edge blending: one value per face
    shown = 0
    for k in range(N_STATS):
        levels = {tuple(v) for v in rgba[k, ..., :3].reshape(-1, 3) if v.any()}
        assert len(levels) <= 3  # at most three faces of a cube face the camera
        shown += len(levels) >= 1
        brightness = {int(np.sum(v, dtype=np.int64)) for v in levels}
        assert len(brightness) == len(levels)  # different faces, different brightness
    assert shown >= 0.9 * N_STATS  # with no ambient light a few cubes can face away from the light
