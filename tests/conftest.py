"""Shared test set-up: private FiftyOne database, offline W&B, tiny real data."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Set before anything imports fiftyone or wandb: both read their environment at import time.
_PRIVATE = Path(tempfile.mkdtemp(prefix="tune_cilp_tests_"))
atexit.register(shutil.rmtree, _PRIVATE, ignore_errors=True)
os.environ["FIFTYONE_DATABASE_DIR"] = str(_PRIVATE / "fiftyone_db")
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(_PRIVATE / "fiftyone_media")
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("WANDB_API_KEY", None)
os.environ["TUNE_CILP_DATA_DIR"] = str(_PRIVATE / "data")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402
from helpers import RayEnv, saved_environ  # noqa: E402

from tune_cilp.data import CilpArrays, generate_raw, load_arrays  # noqa: E402

TINY_SCENES = 48  # 24 cubes + 24 spheres: enough for a split with both classes on each side


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw-layout directory (cubes/, spheres/) of TINY_SCENES synthetic scenes, seed 0."""
    out = tmp_path_factory.mktemp("tiny_raw")
    generate_raw(out, scenes=TINY_SCENES, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_arrays(tiny_raw: Path) -> CilpArrays:
    """The tiny raw set loaded for training (seeded train/validation split)."""
    return load_arrays(tiny_raw)


@pytest.fixture
def restore_env() -> Iterator[None]:
    """The runner sets W&B and Ray variables in os.environ; later tests must not see them."""
    with saved_environ():
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked gpu need CUDA: skipped with the reason on a machine without it."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def ray_env() -> Iterator[RayEnv]:
    """A private Ray temp dir for a module's runner subprocesses; their leftovers are stopped."""
    env = RayEnv()
    yield env
    env.close()
