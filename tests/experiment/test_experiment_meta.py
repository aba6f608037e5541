"""tune_cilp.json: what an experiment is made of, how a re-run is compared with it, and how
files of the earlier version read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import BASE

from tune_cilp.core.errors import UserError
from tune_cilp.data import CilpArrays
from tune_cilp.experiment.identity import (
    META_FILE,
    check_same,
    differences,
    fingerprint,
    read_meta,
    write_meta,
)


def test_roundtrip_and_the_finished_mark(tmp_path: Path) -> None:
    assert read_meta(str(tmp_path)) is None
    write_meta(str(tmp_path), dataclasses.replace(BASE, finished_at="now"))
    assert read_meta(str(tmp_path)) == dataclasses.replace(BASE, finished_at="now")
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(UserError, match="unreadable metadata"):
        read_meta(str(tmp_path))


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (
            {"dataset": "data/B"},
            "--dataset: this experiment was made with synthetic:seed, not data/B",
        ),
        ({"data_fingerprint": "b" * 32}, "--dataset: the data at synthetic:seed changed"),
        ({"epochs": 5}, "--epochs: this experiment was made with 50, not 5"),
        ({"seeds": [1, 2]}, "--seeds: this experiment was made with the default, not 1,2"),
        ({"smoke_test": True}, "--smoke-test: this experiment was made with off, not on"),
        ({"gpus_per_trial": 0.5}, "--gpus-per-trial: this experiment was made with the default"),
        (
            {
                "race": {
                    "variants": {"a": {}, "b": {}},
                    "max_seeds": 6,
                    "alpha": 0.1,
                    "margin": None,
                }
            },
            "--race, --max-seeds, --alpha, --margin: this experiment was made with no --race, not "
            "--race of 2 variants, --max-seeds 6, --alpha 0.1, no --margin",
        ),
    ],
)
def test_each_difference_is_named(change: dict, phrase: str) -> None:
    other = dataclasses.replace(BASE, **change)
    (line,) = differences(BASE, other)
    assert line.startswith(phrase), line
    with pytest.raises(UserError, match="use a new --name for a new experiment"):
        check_same("exp", BASE, other)
    assert differences(BASE, dataclasses.replace(BASE, argv=["x"], created_at="t")) == []


def test_a_version_1_file_reads_as_the_balanced_set_it_was_made_with(tmp_path: Path) -> None:
    old = {"space": "seed-ablation", "dataset": None, "data_dir": "/d", "smoke_test": False}
    (tmp_path / META_FILE).write_text(json.dumps({**old, "argv": []}))
    meta = read_meta(str(tmp_path))
    assert meta.dataset == "synthetic:balanced" and meta.epochs is None
    # Fields version 1 did not record are not compared; its data is.
    assert differences(meta, dataclasses.replace(BASE, dataset="synthetic:balanced")) == [
        "--data-dir: this experiment was made with /d, not /data"
    ]
    made = "--dataset: this experiment was made with synthetic:balanced, not synthetic:seed"
    assert differences(meta, BASE)[0] == made


def test_fingerprint_sees_any_changed_byte(tiny_arrays: CilpArrays) -> None:
    first = fingerprint(tiny_arrays)
    assert fingerprint(tiny_arrays.subset(np.arange(len(tiny_arrays)))) == first
    rgb = tiny_arrays.rgb.copy()
    rgb[3, 1, 2, 3] ^= 1
    assert fingerprint(dataclasses.replace(tiny_arrays, rgb=rgb)) != first
    flipped = dataclasses.replace(tiny_arrays, is_train=~tiny_arrays.is_train)
    assert fingerprint(flipped) != first


def test_a_changed_lidar_cnn_file_is_named_once() -> None:
    made = dataclasses.replace(BASE, lidar_cnn="/m/cnn.pt", lidar_cnn_sha256="a" * 64)
    (line,) = differences(made, dataclasses.replace(made, lidar_cnn_sha256="b" * 64))
    assert line == "--lidar-cnn: the file /m/cnn.pt changed since this experiment was made"
    moved = dataclasses.replace(made, lidar_cnn="/n/cnn.pt", lidar_cnn_sha256="b" * 64)
    (line,) = differences(made, moved)  # another path: said once, by the path
    assert line.startswith("--lidar-cnn: this experiment was made with /m/cnn.pt"), line
    older = dataclasses.replace(made, lidar_cnn_sha256=None)  # made before hashes were kept
    assert differences(older, made) == []
    with pytest.raises(UserError, match="the file /m/cnn.pt changed"):
        check_same("exp", made, dataclasses.replace(made, lidar_cnn_sha256="b" * 64))
