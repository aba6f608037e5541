"""Synthetic CILP scenes: analytic ray casting of one sphere or cube into LiDAR depth and RGB.

Imitates the real CILP data (docs/DATA.md, Scenes and XYZA): the LiDAR sits at the origin looking
along +y with z up and casts one beam per (azimuth row, zenith column) of a 0.5 degree grid; a
pinhole camera at the same place sees the scene with a 47 degree field of view, rotated 90 degrees
against the LiDAR grid; a single directional light from above and behind the object lights it
(Lambertian, no ambient), so the camera shows only a lit crescent of a sphere or one or two faces
of a cube.

Everything is vectorised over rays and over a batch of scenes; ``generate_raw`` writes the raw
layout (docs/DATA.md, Raw layout) atomically.
"""

from __future__ import annotations

import math
import numbers
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tune_cilp.core.errors import UserError
from tune_cilp.core.path_guard import check_output_dir, write_error
from tune_cilp.data.constants import IMAGE_SIZE, LABELS, MAX_RANGE

GRID_DEG = np.arange(-16.0, 16.0, 0.5)
AZIMUTH = np.deg2rad(GRID_DEG).astype(np.float32)  # indexes LiDAR rows
ZENITH = np.deg2rad(GRID_DEG).astype(np.float32)  # indexes LiDAR columns
SPHERE_RADIUS = 1.5
CUBE_SIDE = 3.0
FORWARD_RANGE = (21.0, 29.0)  # object centre: y (distance ahead of the sensor)
OFFSET_RANGE = 4.0  # object centre: |x|, |z| at most this
CAMERA_FOV_DEG = 47.0  # horizontal (and vertical: the image is square)
CAMERA_FOCAL = (IMAGE_SIZE / 2) / math.tan(math.radians(CAMERA_FOV_DEG) / 2)  # in pixels
SUPERSAMPLE = 3  # camera rays per pixel side; averaging them gives the soft edges of the real PNGs
# Direction towards the light in world coordinates (x right, y ahead, z up): 45 degrees up, from
# the left and a little behind the object. Fitted to the real sphere images (lit cap towards the
# upper left, about half the disc lit, terminator running from lower left to upper right).
LIGHT_ELEVATION_DEG = 45.0
LIGHT_FROM_LEFT_DEG = 85.0  # angle from +y (straight behind) towards -x (left)
LIGHT_DIR = np.array(
    [
        -math.sin(math.radians(LIGHT_FROM_LEFT_DEG)) * math.cos(math.radians(LIGHT_ELEVATION_DEG)),
        math.cos(math.radians(LIGHT_FROM_LEFT_DEG)) * math.cos(math.radians(LIGHT_ELEVATION_DEG)),
        math.sin(math.radians(LIGHT_ELEVATION_DEG)),
    ]
)
LIGHT_INTENSITY = 1.5  # > 1: most of the lit part saturates at the colour, as in the real images
DEFAULT_SPHERE_FRACTION = 0.5  # balanced classes
_RAYS_PER_BATCH = 1_500_000  # scene batch size * rays; bounds the memory of one vectorised step


@dataclass(frozen=True)
class Scenes:
    """A list of scenes, aligned by index; each can be rendered as a cube or as a sphere.

    centers:   float64 (N, 3)    object centre (x right, y ahead, z up)
    rotations: float64 (N, 3, 3) cube orientation; column k is the cube's k-th axis in world space
    colors:    float64 (N, 3)    diffuse albedo, linear RGB in [0, 1]
    """

    centers: np.ndarray
    rotations: np.ndarray
    colors: np.ndarray

    def __len__(self) -> int:
        return len(self.centers)

    def __getitem__(self, index: slice) -> Scenes:
        return Scenes(self.centers[index], self.rotations[index], self.colors[index])


def sample_scenes(n: int, seed: int) -> Scenes:
    """Draw ``n`` random scenes; scene i does not depend on ``n`` (prefixes are stable).

    Position uniform in a box (forward 21-29, lateral and vertical within +-4), a uniformly random
    3-D rotation for the cube, and a random bright colour (any hue).
    """
    # One row of uniforms per scene, drawn row by row: the first rows are the same for any n.
    u = np.random.default_rng(seed).random((n, 9))
    lo, hi = FORWARD_RANGE
    centers = np.stack(
        [
            (2 * u[:, 0] - 1) * OFFSET_RANGE,
            lo + (hi - lo) * u[:, 1],
            (2 * u[:, 2] - 1) * OFFSET_RANGE,
        ],
        axis=1,
    )
    # Drawn as the colour a fully lit pixel shows (sRGB), stored as the linear albedo that gives it.
    shown = _hsv_to_rgb(u[:, 3], 0.05 + 0.9 * u[:, 4], 0.75 + 0.25 * u[:, 5])
    return Scenes(centers, _random_rotations(u[:, 6:9]), _decode_srgb(shown))


def _random_rotations(u: np.ndarray) -> np.ndarray:
    """Uniformly distributed rotation matrices (N, 3, 3) from uniforms (N, 3) (Shoemake 1992)."""
    a, b = np.sqrt(1 - u[:, 0]), np.sqrt(u[:, 0])
    x, y = a * np.sin(2 * np.pi * u[:, 1]), a * np.cos(2 * np.pi * u[:, 1])
    z, w = b * np.sin(2 * np.pi * u[:, 2]), b * np.cos(2 * np.pi * u[:, 2])
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all in [0, 1]; returns (N, 3)."""
    k = (np.array([5.0, 3.0, 1.0]) + 6 * h[:, None]) % 6
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _lidar_dirs(az: np.ndarray, ze: np.ndarray) -> np.ndarray:
    """Unit beam directions (N, H, W, 3) for per-scene azimuths (N, H) and zeniths (N, W).

    Row i = azimuth[i], column j = zenith[j], as in docs/DATA.md, XYZA.
    """
    az = az.astype(np.float64)[:, :, None]
    ze = ze.astype(np.float64)[:, None, :]
    x, y, z = np.sin(-az) * np.cos(-ze), np.cos(-az) * np.cos(-ze), np.sin(-ze)
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def _camera_dirs(u: np.ndarray, v: np.ndarray, focal: float) -> np.ndarray:
    """Unit pinhole-camera rays (N, H, W, 3) through per-scene pixel offsets u (N, W), v (N, H).

    Offsets are in pixels from the image centre, u to the right (+x) and v downwards (-z); the
    optical axis is +y.
    """
    u, v = np.broadcast_arrays(u[:, None, :], v[:, :, None])
    dirs = np.stack([u, np.full_like(u, focal), -v], axis=-1)
    return dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)


def cast(shape: str, scenes: Scenes, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast rays from the origin into each scene's single object.

    dirs: unit directions, (R, 3) shared by all scenes or (N, R, 3) per scene. Returns
    ``(t, lit)``, both (N, R): the distance to the first hit (inf on a miss) and the Lambertian
    factor ``max(0, normal . light)`` there (0 on a miss).
    """
    dirs = np.broadcast_to(dirs, (len(scenes),) + dirs.shape[-2:])
    if shape == "spheres":
        return _cast_spheres(scenes, dirs)
    if shape == "cubes":
        return _cast_cubes(scenes, dirs)
    raise ValueError(f"unknown shape {shape!r}; expected one of {LABELS}")


def _cast_spheres(scenes: Scenes, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = scenes.centers
    b = np.einsum("nrk,nk->nr", dirs, c)  # projection of the centre on each ray
    disc = b * b - (np.sum(c * c, axis=1) - SPHERE_RADIUS**2)[:, None]
    hit = disc >= 0
    t = np.where(hit, b - np.sqrt(np.where(hit, disc, 0.0)), np.inf)
    # normal . light = ((t d - c) . L) / r
    cos = np.where(hit, t, 0.0) * (dirs @ LIGHT_DIR) - (c @ LIGHT_DIR)[:, None]
    lit = np.where(hit, np.maximum(cos / SPHERE_RADIUS, 0.0), 0.0)
    return t, lit


def _cast_cubes(scenes: Scenes, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Slab test in the cube's own frame, where it is the box [-h, h]^3.
    rot = scenes.rotations
    d = np.einsum("nrj,njk->nrk", dirs, rot)
    o = -np.einsum("nj,njk->nk", scenes.centers, rot)[:, None, :]  # (N, 1, 3)
    h = CUBE_SIDE / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-h - o) / d
        t2 = (h - o) / d
    near = np.minimum(t1, t2)
    t_near = near.max(axis=-1)
    t_far = np.maximum(t1, t2).min(axis=-1)
    hit = (t_near <= t_far) & (t_near > 0)
    t = np.where(hit, t_near, np.inf)
    # The face hit is the slab entered last; its outward normal points against the ray.
    axis = near.argmax(axis=-1)[..., None]
    sign = -np.sign(np.take_along_axis(d, axis, axis=-1))[..., 0]
    light_local = (LIGHT_DIR @ rot)[:, None, :]  # light in each cube's frame, (N, 1, 3)
    cos = sign * np.take_along_axis(np.broadcast_to(light_local, d.shape), axis, axis=-1)[..., 0]
    lit = np.where(hit, np.maximum(cos, 0.0), 0.0)
    return t, lit


# Rendering casts only the rays in a window around each object: the object covers a few percent of
# the image, so this is ~5x faster than casting the whole grid, with the same result.


def _angles(scenes: Scenes, shape: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-scene angular ranges (radians) that contain the object's bounding sphere.

    ``azimuth``: angle in the xy-plane from +y towards +x; ``elevation``: angle above the
    xy-plane; ``pitch``: angle in the yz-plane from +y towards +z (what a pinhole row sees).
    """
    radius = SPHERE_RADIUS if shape == "spheres" else CUBE_SIDE / 2 * math.sqrt(3)
    x, y, z = scenes.centers.T
    dist = np.linalg.norm(scenes.centers, axis=1)

    def around(angle: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = np.arcsin(np.minimum(radius / reach, 1.0))
        return angle - half, angle + half

    return {
        "azimuth": around(np.arctan2(x, y), np.hypot(x, y)),
        "elevation": around(np.arcsin(z / dist), dist),
        "pitch": around(np.arctan2(z, y), np.hypot(z, y)),
    }


def _window(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Per-scene start indices (N,) and one common width of windows covering the float index
    ranges [lo, hi] (plus a one-index margin) inside [0, size)."""
    first = np.floor(lo).astype(np.int64) - 1
    last = np.ceil(hi).astype(np.int64) + 1
    width = int(min(size, max(1, (last - first).max() + 1)))
    return np.clip(first, 0, size - width), width


def _paste(canvas: np.ndarray, block: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """canvas[n, rows[n, i], cols[n, j]] = block[n, i, j] for every scene n."""
    n = np.arange(len(block))[:, None, None]
    canvas[n, rows[:, :, None], cols[:, None, :]] = block


def _batches(n: int, rays: int) -> list[slice]:
    step = max(1, _RAYS_PER_BATCH // rays)
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def render_lidar(shape: str, scenes: Scenes) -> np.ndarray:
    """LiDAR depth maps float32 (N, 64, 64): range to the first hit, exactly MAX_RANGE on a miss."""
    step = math.radians(float(GRID_DEG[1] - GRID_DEG[0]))
    first = math.radians(float(GRID_DEG[0]))
    angles = _angles(scenes, shape)
    az_lo, az_hi = (-a for a in angles["azimuth"][::-1])  # azimuth rows run against +x
    ze_lo, ze_hi = (-a for a in angles["elevation"][::-1])  # zenith columns run downwards
    row0, height = _window((az_lo - first) / step, (az_hi - first) / step, IMAGE_SIZE)
    col0, width = _window((ze_lo - first) / step, (ze_hi - first) / step, IMAGE_SIZE)
    out = np.full((len(scenes), IMAGE_SIZE, IMAGE_SIZE), MAX_RANGE, dtype=np.float32)
    for sl in _batches(len(scenes), height * width):
        rows = row0[sl, None] + np.arange(height)
        cols = col0[sl, None] + np.arange(width)
        dirs = _lidar_dirs(AZIMUTH[rows], ZENITH[cols]).reshape(len(rows), -1, 3)
        t, _ = cast(shape, scenes[sl], dirs)
        depth = np.minimum(t, MAX_RANGE).reshape(-1, height, width)
        _paste(out[sl], depth, rows, cols)
    return out


def render_camera(shape: str, scenes: Scenes, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Camera images uint8 (N, 64, 64, 4) RGBA: lit colour on black, alpha 255 everywhere."""
    s, focal, half = supersample, CAMERA_FOCAL, IMAGE_SIZE / 2
    angles = _angles(scenes, shape)
    # Pixel c spans offsets [c - 32, c - 31] from the image centre; rows run downwards.
    col_lo, col_hi = (focal * np.tan(a) + half for a in angles["azimuth"])
    row_lo, row_hi = (-focal * np.tan(a) + half for a in angles["pitch"][::-1])
    row0, height = _window(row_lo, row_hi, IMAGE_SIZE)
    col0, width = _window(col_lo, col_hi, IMAGE_SIZE)
    sub = (np.arange(height * s) + 0.5) / s, (np.arange(width * s) + 0.5) / s
    shade = np.zeros((len(scenes), IMAGE_SIZE, IMAGE_SIZE))
    for sl in _batches(len(scenes), height * width * s * s):
        v = row0[sl, None] + sub[0] - half
        u = col0[sl, None] + sub[1] - half
        _, lit = cast(shape, scenes[sl], _camera_dirs(u, v, focal).reshape(len(u), -1, 3))
        # Clip each sample at the colour, then average the samples of a pixel (box filter).
        lit = np.minimum(LIGHT_INTENSITY * lit, 1.0).reshape(-1, height, s, width, s)
        rows = row0[sl, None] + np.arange(height)
        cols = col0[sl, None] + np.arange(width)
        _paste(shade[sl], lit.mean(axis=(2, 4)), rows, cols)
    out = np.zeros((len(scenes), IMAGE_SIZE, IMAGE_SIZE, 4), dtype=np.uint8)
    out[..., 3] = 255
    shown = shade > 0  # encode only the object's pixels: the background stays black
    rgb = shade[shown][:, None] * scenes.colors[np.nonzero(shown)[0]]
    out[..., :3][shown] = np.round(255 * _encode_srgb(rgb)).astype(np.uint8)
    return out


def _decode_srgb(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (inverse of ``_encode_srgb``)."""
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def _encode_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values in [0, 1], as a renderer writes them to PNG."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def class_counts(scenes: int, sphere_fraction: float) -> dict[str, int]:
    """Scenes per class folder: ``round(scenes * sphere_fraction)`` spheres, the rest cubes."""
    spheres = round(scenes * sphere_fraction)
    return {"cubes": scenes - spheres, "spheres": spheres}


def _check_args(scenes: int, seed: int, sphere_fraction: float) -> None:
    if isinstance(scenes, bool) or not isinstance(scenes, numbers.Integral) or scenes < 1:
        raise UserError(f"scenes: expected an integer >= 1, got {scenes!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise UserError(f"seed: expected an integer >= 0, got {seed!r}")
    fraction = sphere_fraction
    is_number = isinstance(fraction, numbers.Real) and not isinstance(fraction, bool)
    if not is_number or not 0 <= fraction <= 1:
        raise UserError(f"sphere_fraction: expected a number in [0, 1], got {sphere_fraction!r}")
    counts = class_counts(scenes, sphere_fraction)
    if max(counts.values()) > 9999:  # file names have four digits (docs/DATA.md, Raw layout)
        raise UserError(f"scenes: at most 9999 per class, got {counts} from scenes={scenes}")


def generate_raw(
    out_dir: str | Path,
    scenes: int,
    seed: int,
    sphere_fraction: float = DEFAULT_SPHERE_FRACTION,
    progress: bool = False,
) -> Path:
    """Render ``scenes`` synthetic scenes into the raw layout under ``out_dir``.

    ``round(scenes * sphere_fraction)`` of them are spheres, the rest cubes; index i of both
    classes shares position and colour (one scene list rendered once per shape). The same
    arguments give byte-identical files. The output appears all at once: it is rendered into a
    temporary sibling directory and renamed into place; ``out_dir`` must not exist or be empty.
    Returns ``out_dir`` as a Path. Bad arguments raise UserError.
    """
    _check_args(scenes, seed, sphere_fraction)
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty directory; choose a new --out")
    # A hidden sibling on the same file system, so the final rename is atomic.
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    check_output_dir(out.parent, "--out", create=True)
    try:
        tmp.mkdir()
        counts = class_counts(scenes, sphere_fraction)
        scene_list = sample_scenes(max(counts.values()), seed)
        with tqdm(total=scenes, desc="rendering scenes", unit="scene", disable=not progress) as bar:
            for shape in LABELS:
                _write_class(tmp / shape, shape, scene_list[: counts[shape]], bar)
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace it on every platform
        tmp.rename(out)
    except OSError as exc:  # a full disk or quota mid-way: nothing of it is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error("--out", out, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_class(folder: Path, shape: str, scenes: Scenes, bar: tqdm) -> None:
    (folder / "rgb").mkdir(parents=True)
    (folder / "lidar").mkdir()
    np.save(folder / "azimuth.npy", AZIMUTH)
    np.save(folder / "zenith.npy", ZENITH)
    # Render in chunks so memory stays flat and the progress bar moves.
    for start in range(0, len(scenes), 64):
        chunk = scenes[start : start + 64]
        depth = render_lidar(shape, chunk)
        rgb = render_camera(shape, chunk)
        for k in range(len(chunk)):
            name = f"{start + k:04d}"
            np.save(folder / "lidar" / f"{name}.npy", depth[k])
            Image.fromarray(rgb[k]).save(folder / "rgb" / f"{name}.png")
        bar.update(len(chunk))
