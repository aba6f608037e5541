"""The built-in synthetic sets: the data directory, generating a set once, its cached arrays.

Two named sets of 1,074 scenes (seed 51, split 895 / 179), chosen with ``--dataset
synthetic:NAME``: ``seed`` (the default) has the seed export's class balance, 999 cubes and 75
spheres (the 7 % copy error that made the seed's strided model look 93 % accurate while it
predicted mostly cubes), ``balanced`` half of each. Generated under the data directory on first
use and cached there as an .npz, so that later loads take a fraction of a second (docs/DATA.md,
Sources). Each set has its own folder, named by its sphere fraction, so a cache of one is never
taken for the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.errors import UserError
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.data.constants import DEFAULT_SEED
from tune_cilp.data.raw import read_raw
from tune_cilp.data.split import DEFAULT_SPLIT, split_mask
from tune_cilp.data.synthetic import DEFAULT_SPHERE_FRACTION, generate_raw

DEFAULT_SCENES = 1074  # the seed notebook's 1,074 groups
# Named synthetic sets -> sphere fraction. round(1074 * 0.07) = 75 spheres, 999 cubes.
SYNTHETIC_SETS: dict[str, float] = {"seed": 0.07, "balanced": DEFAULT_SPHERE_FRACTION}
DEFAULT_SET = "seed"
SYNTHETIC_PREFIX = "synthetic:"  # --dataset synthetic:NAME
DEFAULT_SOURCE = SYNTHETIC_PREFIX + DEFAULT_SET  # what --dataset means when it is not given


def is_synthetic(source: str | None) -> bool:
    """Whether `source` names a built-in synthetic set (None: the default one)."""
    return source is None or str(source).startswith(SYNTHETIC_PREFIX)


CACHE_VERSION = 1  # bump when the cached arrays' meaning changes
DATA_DIR = "~/.cache/tune_cilp"  # where the built-in sets are cached by default
ARRAY_FIELDS = tuple(f.name for f in dataclasses.fields(CilpArrays))


def default_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else $TUNE_CILP_DATA_DIR, else DATA_DIR."""
    chosen = data_dir or os.environ.get("TUNE_CILP_DATA_DIR") or DATA_DIR
    return Path(chosen).expanduser()


def synthetic_set(source: str) -> str:
    """The set name of a ``synthetic:NAME`` source; UserError for an unknown name."""
    name = source.removeprefix(SYNTHETIC_PREFIX)
    if name not in SYNTHETIC_SETS:
        known = ", ".join(SYNTHETIC_PREFIX + n for n in SYNTHETIC_SETS)
        raise UserError(f"--dataset {source}: unknown synthetic set (known: {known})")
    return name


def default_raw_dir(data_dir: str | Path | None = None, name: str = DEFAULT_SET) -> Path:
    """Where synthetic set `name`'s raw layout lives (it may not exist yet)."""
    folder = f"cilp-{DEFAULT_SCENES}-seed{DEFAULT_SEED}-spheres{SYNTHETIC_SETS[name]:g}"
    return default_data_dir(data_dir) / "synthetic" / folder


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


def ensure_default_raw(
    data_dir: str | Path | None = None, name: str = DEFAULT_SET, *, progress: bool = True
) -> Path:
    """Generate synthetic set `name`'s raw layout unless it is already there; return its path."""
    raw = default_raw_dir(data_dir, name)
    if not raw.is_dir():
        with _locked(raw.parent):
            if not raw.is_dir():
                generate_raw(
                    raw,
                    scenes=DEFAULT_SCENES,
                    seed=DEFAULT_SEED,
                    sphere_fraction=SYNTHETIC_SETS[name],
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


def read_default(
    data_dir: str | Path | None = None, name: str = DEFAULT_SET, *, progress: bool = False
) -> CilpArrays:
    """Synthetic set `name`, split with DEFAULT_SPLIT and DEFAULT_SEED (895 / 179)."""
    raw = ensure_default_raw(data_dir, name)  # a one-off ~2 s step: always show its progress
    cache = raw.parent / f"{raw.name}.arrays-v{CACHE_VERSION}.npz"
    arrays = _load_npz(cache) if cache.is_file() else None
    if arrays is None:
        scenes = read_raw(raw, progress=progress)
        arrays = scenes.to_arrays(split_mask(len(scenes.ids), DEFAULT_SPLIT, DEFAULT_SEED))
        _save_npz(cache, arrays)
    return arrays
