"""Where experiments are stored: a local (or NFS) path, or a URI Ray Tune writes through
pyarrow; a local path is created and checked writable before anything is written there."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from tune_cilp.core.errors import UserError
from tune_cilp.core.path_guard import FALLBACK_NAME_MAX, check_fits, check_output_dir

# Bytes of path the tool creates under an experiment: a CILP stage's folder, a trial's folder
# (Tune's names run to ~200 bytes), checkpoint_NNNNNN/ and a temporary file's name.
EXPERIMENT_DEPTH = 512
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

    def check_fits(self) -> None:
        """UserError unless the experiment's name, and on a local path everything the tool
        creates under it, fit the filesystem (Ray and pyarrow fail with tracebacks)."""
        if self.local:
            check_fits(self.parent, "--storage-path")
            check_fits(self.path, "--storage-path and --name", reserve=EXPERIMENT_DEPTH)
        elif len(os.fsencode(self.name)) > FALLBACK_NAME_MAX:  # Ray stages it locally too
            raise UserError(
                f"--name: {len(os.fsencode(self.name))} bytes; at most {FALLBACK_NAME_MAX}"
            )

    def started(self) -> bool:
        """Whether Tune has begun this experiment: its tuner.pkl and an experiment state are on
        the storage. A tuner.pkl alone (a stop between the Tuner's creation and its first state
        save) is no start: Tune would restore it without the search space and run trials with
        empty configs, so the experiment starts afresh and the new Tuner overwrites it."""
        # Here: the request's value is read without Ray where it is not run.
        import pyarrow.fs
        from ray import tune

        from tune_cilp.experiment.state_repair import STATE_GLOB

        if not tune.Tuner.can_restore(self.path):
            return False
        if self.local:
            fs, root = pyarrow.fs.LocalFileSystem(), self.path
        else:
            fs, root = pyarrow.fs.FileSystem.from_uri(self.path)
        states = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        return any(info.is_file and fnmatch(info.base_name, STATE_GLOB) for info in states)


def local_storage(storage_path: str) -> Path:
    """A local storage path (or file:// URI), absolute, created and checked writable."""
    path = Path(os.path.expanduser(storage_path.removeprefix("file://"))).resolve()
    check_output_dir(path, "--storage-path", create=True)  # a folder, writable, not full
    try:  # a real write too: NFS may refuse what access() allowed (root squashing)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as exc:
        raise UserError(f"--storage-path: {path} is not writable ({exc.strerror})") from None
    return path
