"""Where experiments are stored: a local (or NFS) path, or a URI Ray Tune writes through
pyarrow; a local path is created and checked writable before anything is written there."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tune_cilp.core.errors import UserError

# Storage URI schemes Ray Tune can write to (through pyarrow); file:// is handled as local.
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def is_uri(storage_path: str) -> bool:
    """True for a remote storage URI; checks its scheme (a local path or file:// is not one)."""
    scheme, sep, rest = storage_path.partition(":")
    if not sep or "/" in scheme or scheme == "file":
        return False
    if not rest.startswith("//") or not rest[2:].strip("/"):
        raise UserError(f"--storage-path: malformed URI {storage_path!r} (expected scheme://path)")
    if scheme not in URI_SCHEMES:
        raise UserError(
            f"--storage-path: unsupported URI scheme {scheme!r} (use {', '.join(URI_SCHEMES)}, "
            "or a local or NFS path)"
        )
    return True


@dataclass(frozen=True)
class Location:
    """Where one Tune experiment lives, as Tune takes it: its storage path (an absolute local
    path or a URI) and its name; the experiment is <parent>/<name>."""

    parent: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.parent.rstrip('/')}/{self.name}"

    @property
    def local(self) -> bool:
        """A local (or NFS) path, not a URI."""
        return not is_uri(self.parent)

    def child(self, name: str) -> Location:
        """An experiment inside this one (a CILP stage)."""
        return Location(self.path, name)

    def started(self) -> bool:
        """Whether Tune has begun this experiment (its state is on the storage)."""
        from ray import tune  # the request's value is read without Ray where it is not run

        return tune.Tuner.can_restore(self.path)


def local_storage(storage_path: str) -> Path:
    """A local storage path (or file:// URI), absolute, created and checked writable."""
    path = Path(os.path.expanduser(storage_path.removeprefix("file://"))).resolve()
    # os.path, not Path: it answers False instead of raising where a parent is unreadable
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))  # "/" exists
    if not os.path.isdir(existing):
        under = "" if existing == path else f" (so {path} cannot be created)"
        raise UserError(f"--storage-path: {existing} is a file, not a directory{under}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as exc:
        raise UserError(f"--storage-path: {path} is not writable ({exc.strerror})") from None
    return path
