"""An experiment's identity: ``tune_cilp.json`` in the experiment directory.

Written once when ``python -m tune_cilp.run`` creates an experiment, read and checked on every
re-run (a re-run with other data or settings would silently mix two experiments in one table),
and read by the analysis to find the experiment's data again. The file holds:

- the identity (``IDENTITY``): what defines the experiment's numbers. A re-run whose identity
  differs is refused, naming every difference.
- provenance: the command line, when it was made, and where replicated configurations came from.
- ``finished_at``: set once every trial has finished, so a re-run only prints the table.

Local paths and storage URIs (s3://, gs://, ...) are read and written through pyarrow.fs, the
file system layer Ray Tune itself uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow.fs

from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.errors import UserError
from tune_cilp.core.json_shape import check_fields
from tune_cilp.core.path_guard import check_readable_file, open_stored
from tune_cilp.data import CilpArrays

META_FILE = "tune_cilp.json"
META_VERSION = 2
VERSION_1_FIELDS = ("space", "dataset", "data_dir", "smoke_test")  # and argv; no "version" key

# Identity field -> the command-line option that sets it (for the refusal message).
IDENTITY: dict[str, str] = {
    "space": "--space",
    "dataset": "--dataset",
    "data_fingerprint": "--dataset",
    "data_dir": "--data-dir",
    "smoke_test": "--smoke-test",
    "epochs": "--epochs",
    "seeds": "--seeds",
    "num_samples": "--num-samples",
    "precision": "--precision",
    "cpus_per_trial": "--cpus-per-trial",
    "gpus_per_trial": "--gpus-per-trial",
    "replicate": "--replicate",
    "top_k": "--top-k",
    "lidar_cnn": "--lidar-cnn",
    "lidar_cnn_sha256": "--lidar-cnn",
    "test_fraction": "--test-fraction",
    "race": "--race, --max-seeds, --alpha, --margin",
    "pack": "--pack",
}
# Identity fields written only when set: a file without one was made without it, whatever its
# version, so an experiment that never set them has the tune_cilp.json it had before they existed.
ONLY_WHEN_SET = ("test_fraction", "race", "pack")


@dataclass
class ExperimentMeta:
    """What ``tune_cilp.json`` records (see the module docstring)."""

    space: str
    dataset: str  # as given on the command line, or the default synthetic set's name
    data_fingerprint: str  # of the arrays as loaded: a changed file under the same path shows
    data_dir: str | None  # a synthetic set's cache directory (None for other sources)
    smoke_test: bool
    epochs: int
    seeds: list[int] | None
    num_samples: int | None
    precision: str | None
    cpus_per_trial: float | None  # None: the CPU plan's choice (tune_cilp/experiment/cpu_plan.py)
    gpus_per_trial: float | None
    replicate: str | None = None  # experiment whose best configurations this one re-runs
    top_k: int | None = None  # with replicate: the k best overall, else the best per variant
    picks: list[dict[str, Any]] = field(default_factory=list)  # replicate's source trials
    lidar_cnn: str | None = None  # CILP: NVIDIA's LiDAR CNN state dict the projector maps onto
    lidar_cnn_sha256: str | None = None  # its content: a changed file under the same path shows
    test_fraction: float | None = None  # share of the validation scenes held out as a test split
    race: dict[str, Any] | None = None  # --race: its design and variant configs (analysis)
    pack: int | None = None  # --pack: seeds per trial
    argv: list[str] = field(default_factory=list)
    created_at: str = ""
    finished_at: str | None = None
    version: int | None = META_VERSION  # None: a version 1 file

    def identity(self) -> dict[str, Any]:
        """The fields that define the experiment's numbers."""
        values = asdict(self)
        return {key: values[key] for key in IDENTITY}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> ExperimentMeta:
        """From a stored dict; fields an older version did not record are None. ValueError if
        it is not a dict or a field's value is not of the field's type."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"expected a JSON object, got {type(mapping).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in mapping.items() if k in known}
        for name in known - set(values):
            values.setdefault(name, None)
        values["argv"] = values["argv"] or []
        values["picks"] = values["picks"] or []
        if values["version"] is None and values["dataset"] is None:
            # Version 1 wrote null for the default synthetic set, which was balanced then.
            values["dataset"] = "synthetic:balanced"
        # None: not recorded (an older version), accepted for every field as above
        check_fields(cls, {k: v for k, v in values.items() if v is not None})
        return cls(**values)


def fingerprint(data: CilpArrays) -> str:
    """A content hash of the arrays (shapes, dtypes and bytes of every field)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in ("rgb", "xyza", "labels", "is_train", "ids"):
        arr = np.ascontiguousarray(getattr(data, name))
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.tobytes() if arr.dtype.kind != "U" else "\0".join(arr).encode())
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(check_readable_file(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    """The current local time as an ISO-8601 string (seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _fs(experiment: str) -> tuple[pyarrow.fs.FileSystem, str]:
    try:
        return pyarrow.fs.FileSystem.from_uri(experiment)
    except (pyarrow.ArrowInvalid, OSError) as exc:
        raise UserError(f"{experiment}: cannot open storage ({exc})") from None


def read_meta(experiment: str) -> ExperimentMeta | None:
    """The experiment's metadata, None if it has no tune_cilp.json; UserError if unreadable."""
    fs, path = _fs(experiment)
    meta_path = f"{path.rstrip('/')}/{META_FILE}"
    try:
        with open_stored(fs, meta_path) as f:
            return ExperimentMeta.from_dict(json.loads(f.readall().decode("utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{experiment}/{META_FILE}: unreadable metadata ({exc})") from None


def write_meta(experiment: str, meta: ExperimentMeta) -> None:
    """Write tune_cilp.json: atomically on a local path, as one object on a storage URI."""
    values = asdict(meta)
    for key in ONLY_WHEN_SET:
        if values[key] is None:
            del values[key]
    text = json.dumps(values, indent=2) + "\n"
    fs, path = _fs(experiment)
    fs.create_dir(path, recursive=True)
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        with atomic_output(os.path.join(path, META_FILE), "w") as f:
            f.write(text)
        return
    with fs.open_output_stream(f"{path.rstrip('/')}/{META_FILE}") as out:
        out.write(text.encode())


def _shown(key: str, value: Any) -> str:
    if key == "data_fingerprint":
        return f"data fingerprint {str(value)[:12]}"
    if value is None:
        return {
            "replicate": "no --replicate",
            "lidar_cnn": "no --lidar-cnn",
            "test_fraction": "no --test-fraction",
            "race": "no --race",
            "pack": "no --pack",
        }.get(key, "the default")
    if key == "race" and isinstance(value, dict):
        margin = value.get("margin")
        return (
            f"--race of {len(value.get('variants') or {})} variants, --max-seeds "
            f"{value.get('max_seeds')}, --alpha {value.get('alpha')}, "
            + ("no --margin" if margin is None else f"--margin {margin}")
        )
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def differences(stored: ExperimentMeta, wanted: ExperimentMeta) -> list[str]:
    """One phrase per identity field where a re-run differs from what the experiment was made
    with. Fields the stored file does not have (an older version) are not compared."""
    old, new = stored.identity(), wanted.identity()
    out = []
    for key, option in IDENTITY.items():
        if stored.version is None and key not in (*VERSION_1_FIELDS, *ONLY_WHEN_SET):
            continue  # not recorded by version 1
        if key == "lidar_cnn_sha256" and old[key] is None:
            continue  # recorded since tune_cilp.json had it; the path is still compared
        if old[key] != new[key]:
            if key == "lidar_cnn_sha256" and old["lidar_cnn"] == new["lidar_cnn"]:
                where = new["lidar_cnn"]
                out.append(f"{option}: the file {where} changed since this experiment was made")
            elif key == "lidar_cnn_sha256":
                continue  # another path: said once, by the lidar_cnn field
            elif key == "data_fingerprint" and old["dataset"] == new["dataset"]:
                where = new["dataset"]
                out.append(f"{option}: the data at {where} changed since this experiment was made")
            elif key != "data_fingerprint" or old["dataset"] == new["dataset"]:
                out.append(
                    f"{option}: this experiment was made with {_shown(key, old[key])}, "
                    f"not {_shown(key, new[key])}"
                )
    return out


def check_same(experiment: str, stored: ExperimentMeta, wanted: ExperimentMeta) -> None:
    """UserError (one line naming each difference) unless a re-run matches the experiment."""
    diffs = differences(stored, wanted)
    if diffs:
        raise UserError(
            f"{experiment}: " + "; ".join(diffs) + "; use a new --name for a new experiment"
        )
