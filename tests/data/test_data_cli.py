"""`python -m tune_cilp.data` as a user runs it: the happy path and every bad raw input.

Each bad input must end with exit code 2, one stderr line naming the file and the problem, and
no FiftyOne dataset or media folder left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import ANGLES, make_raw
from helpers import run_data_cli as run_cli

from tune_cilp.core.fiftyone_env import import_fiftyone
from tune_cilp.data.fiftyone_data import media_dir

pytestmark = pytest.mark.slow  # real Ray runs or subprocesses

NAME = "test_data_cli"


@pytest.fixture(scope="module")
def fo():
    fo = import_fiftyone()
    yield fo
    for name in fo.list_datasets():
        if name.startswith(NAME):
            fo.delete_dataset(name)


def _rm(rel: str) -> Callable[[Path], str]:
    def mutate(raw: Path) -> str:
        target = raw / rel
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        else:
            target.unlink()
        return rel

    return mutate


def _rename(src: str, dst: str) -> Callable[[Path], str]:
    def mutate(raw: Path) -> str:
        (raw / src).rename(raw / dst)
        return "0001.npy"

    return mutate


def _write_bytes(rel: str, data: bytes) -> Callable[[Path], str]:
    def mutate(raw: Path) -> str:
        (raw / rel).write_bytes(data)
        return rel

    return mutate


def _save(rel: str, arr: np.ndarray) -> Callable[[Path], str]:
    def mutate(raw: Path) -> str:
        np.save(raw / rel, arr)
        return rel

    return mutate


def _depth_with(value: float) -> np.ndarray:
    depth = np.full((64, 64), 50.0, np.float32)
    depth[10, 10] = value
    return depth


def _extra_class(raw: Path) -> str:
    make_raw(raw / "tmp_extra", per_class=1)
    (raw / "tmp_extra" / "cubes").rename(raw / "cylinders")
    return "cylinders"


def _nothing(raw: Path) -> str:
    return str(raw)


# (case, change to a valid raw layout -> text the message must name, extra ingest args, problem)
BAD_RAW = [
    ("missing directory", lambda raw: str(raw / "nowhere"), [], "no such directory"),
    ("class folder missing", _rm("spheres"), [], "class folder missing"),
    ("counts differ", _rm("cubes/lidar/0002.npy"), [], "do not pair by index"),
    ("indices differ", _rename("cubes/lidar/0001.npy", "cubes/lidar/0007.npy"), [], "do not pair"),
    ("corrupt png", _write_bytes("spheres/rgb/0003.png", b"\x89PNG garbage"), [], "corrupt"),
    ("corrupt npy", _write_bytes("cubes/lidar/0000.npy", b"garbage"), [], "not a readable .npy"),
    (
        "wrong depth shape",
        _save("cubes/lidar/0001.npy", np.zeros((32, 64), np.float32)),
        [],
        "shape",
    ),
    ("wrong depth dtype", _save("spheres/lidar/0002.npy", np.zeros((64, 64))), [], "float32"),
    ("nan depth", _save("cubes/lidar/0003.npy", _depth_with(np.nan)), [], "NaN"),
    ("negative depth", _save("spheres/lidar/0000.npy", _depth_with(-1.0)), [], "negative"),
    ("azimuth length", _save("cubes/azimuth.npy", ANGLES[:63]), [], "shape (64,)"),
    ("zenith length", _save("spheres/zenith.npy", np.zeros(65, np.float32)), [], "shape (64,)"),
    ("label outside classes", _extra_class, [], "is not one of cubes, spheres"),
    ("empty split", _nothing, ["--split", "train=1,validation=0"], "split 'validation' is empty"),
    ("bad subset", lambda raw: "subset", ["--subset", "0"], "must be in (0, 1]"),
]


@pytest.mark.parametrize(
    ("mutate", "extra", "problem"),
    [case[1:] for case in BAD_RAW],
    ids=[case[0] for case in BAD_RAW],
)
def test_bad_raw_input_is_one_line_exit_2_and_builds_nothing(
    fo, tmp_path: Path, mutate, extra: list[str], problem: str
) -> None:
    raw = make_raw(tmp_path / "raw", per_class=4)
    named = mutate(raw)
    name = f"{NAME}_bad"
    result = run_cli("ingest", raw if "nowhere" not in named else named, "--name", name, *extra)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert named in lines[0] and problem in lines[0], lines[0]
    assert not fo.dataset_exists(name)
    assert not media_dir(name).exists()


def test_export_directory_without_samples_json(tmp_path: Path) -> None:
    export = tmp_path / "export"
    (export / "data").mkdir(parents=True)
    (export / "metadata.json").write_text("{}")
    result = run_cli("inspect", export)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert str(export / "samples.json") in lines[0] and "missing" in lines[0]


def test_generate_ingest_export_inspect(fo, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    result = run_cli("generate", "--out", raw, "--scenes", 12, "--seed", 5)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (raw / "spheres" / "rgb").iterdir())[-1] == "0005.png"

    inspect_raw = run_cli("inspect", raw)
    assert inspect_raw.returncode == 0, inspect_raw.stderr
    assert "12 scenes" in inspect_raw.stdout and "(raw)" in inspect_raw.stdout

    result = run_cli("ingest", raw, "--name", NAME, "--subset", "0.5", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert len(fo.load_dataset(NAME).select_group_slices("lidar_pcd")) == 6
    again = run_cli("ingest", raw, "--name", NAME)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert run_cli("ingest", raw, "--name", NAME, "--overwrite").returncode == 0
    assert len(fo.load_dataset(NAME)) == 12

    result = run_cli("export", NAME, "--out", tmp_path / "export")
    assert result.returncode == 0, result.stderr
    for source in (NAME, tmp_path / "export"):
        out = run_cli("inspect", source)
        assert out.returncode == 0, out.stderr
        table = out.stdout.split(f"({'fiftyone' if source == NAME else 'export'}): 12 scenes")[1]
        rows = {line.split()[0]: line.split()[1:] for line in table.strip().splitlines()[2:]}
        assert rows["all"] == ["6", "6", "12"]
        assert int(rows["train"][2]) + int(rows["validation"][2]) == 12
