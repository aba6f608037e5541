"""Files an experiment records (a CILP stage's stage.json, a checkpoint's bytes) on a local path
or a storage URI (s3://, gs://, ...): one way to name, read and write them for both, so that a
CILP chain and its table work on an object store as on a local disk. URIs go through pyarrow.fs
(what Ray Tune writes with, with the same credentials and endpoint variables)."""

from __future__ import annotations

import os
from typing import Any

from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.errors import UserError
from tune_cilp.core.path_guard import open_stored


def is_uri(path: str) -> bool:
    """A storage URI (file:// is a local path)."""
    return "://" in path and not path.startswith("file://")


def absolute(path: str) -> str:
    """A local path made absolute (~ expanded, file:// dropped); a URI as given."""
    if is_uri(path):
        return path
    return os.path.abspath(os.path.expanduser(path.removeprefix("file://")))


def _filesystem(uri: str) -> tuple[Any, str]:
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowInvalid, OSError) as exc:  # unknown scheme, bad endpoint, credentials
        raise UserError(f"{uri}: cannot open storage ({exc})") from None


def is_dir(path: str) -> bool:
    """Whether `path` is a directory (on an object store: a prefix that holds objects)."""
    if not is_uri(path):
        return os.path.isdir(absolute(path))
    import pyarrow.fs

    fs, key = _filesystem(path)
    try:
        return fs.get_file_info(key).type == pyarrow.fs.FileType.Directory
    except OSError as exc:  # no such bucket, access denied, the store unreachable
        raise UserError(f"{path}: cannot read storage ({exc})") from None


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, None if there is none; OSError if it cannot be read."""
    import pyarrow.fs

    fs, key = _filesystem(path) if is_uri(path) else (pyarrow.fs.LocalFileSystem(), absolute(path))
    try:
        with open_stored(fs, key) as f:  # a regular file only: a FIFO would block the read
            return f.readall()
    except FileNotFoundError:
        return None


def write_bytes(path: str, data: bytes) -> None:
    """Write the file whole: atomically on a local path (core/atomic.py); on a URI as one
    object upload, which an object store shows whole or not at all (it has no partial objects
    and no renames)."""
    if not is_uri(path):
        with atomic_output(absolute(path)) as f:
            f.write(data)
        return
    fs, key = _filesystem(path)
    with fs.open_output_stream(key) as out:
        out.write(data)


def list_names(path: str) -> list[str]:
    """The names in a directory (on an object store: under a prefix), [] if there is none;
    OSError if it cannot be listed."""
    if not is_uri(path):
        try:
            return sorted(os.listdir(absolute(path)))
        except FileNotFoundError:
            return []
    import pyarrow.fs

    fs, key = _filesystem(path)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(key, allow_not_found=True))
    return sorted(info.base_name for info in infos)
