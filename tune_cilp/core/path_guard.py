"""One guard for every path the tool opens or writes, checked before the path is used.

- What is read must be a regular file: a named pipe (FIFO) blocks the reader forever, a device
  can be endless, a socket cannot be opened. Each is refused in one line before anything opens it.
- Names and paths must fit the filesystem (NAME_MAX per component, PATH_MAX in all), checked
  before Ray or pyarrow see them: their errors are tracebacks.
- What is written goes through `output`: the place is checked (a writable directory, not a
  FIFO or folder where the file goes), the file is written atomically, and a failure on the
  storage (a full disk, a quota) is one StorageError line with nothing half-written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.errors import StorageError, UserError

# Linux's limits, for a path none of whose parents exist yet (pathconf needs one that does).
FALLBACK_NAME_MAX = 255
FALLBACK_PATH_MAX = 4096
# Less than this free is a full disk for any file the tool writes: refused before writing.
MIN_FREE_BYTES = 1 << 20
# Write failures the user fixes on the storage side (exit 1 where a write fails with one; a
# place refused before anything is written is exit 2), each in words.
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}

_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words ("a regular file", "a named pipe (FIFO)", ...)."""
    return _KINDS.get(stat.S_IFMT(mode), "a regular file" if stat.S_ISREG(mode) else "unknown")


def check_readable_file(path: str | os.PathLike[str], expected: str = "a file") -> Path:
    """`path` if it is a regular file (a link to one counts) this process can read; UserError
    naming what it is otherwise. Nothing is opened, so nothing can block."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: file missing") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: {kind_of(mode)}, but {expected} is expected here; not read")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: not readable (permission denied)")
    return path


def _limits(path: Path) -> tuple[int, int]:
    """(NAME_MAX, PATH_MAX) of the filesystem the nearest existing parent of `path` is on."""
    for parent in (path, *path.parents):
        with contextlib.suppress(OSError):
            if parent.is_dir():
                return os.pathconf(parent, "PC_NAME_MAX"), os.pathconf(parent, "PC_PATH_MAX")
    return FALLBACK_NAME_MAX, FALLBACK_PATH_MAX


def check_fits(path: str | os.PathLike[str], what: str, reserve: int = 0) -> None:
    """UserError (naming `what`) unless every name in `path` and the whole path, with `reserve`
    bytes left for what will be created under it, fit the filesystem's limits."""
    path = Path(os.path.abspath(path))
    name_max, path_max = _limits(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > name_max:
            raise UserError(
                f"{what}: the name {part[:40]}... is {size} bytes; the filesystem allows {name_max}"
            )
    size = len(os.fsencode(str(path))) + reserve
    if size > path_max:
        room = f" and {reserve} for what goes under it" if reserve else ""
        raise UserError(
            f"{what}: the path is {size - reserve} bytes{room}; the filesystem allows {path_max}"
        )


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """The absolute path of a file about to be written: its folder exists and is writable, the
    path fits, and nothing but a regular file stands where it goes; UserError otherwise."""
    path = Path(os.path.abspath(os.path.expanduser(path)))
    check_fits(path, what)
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise UserError(f"{what}: {path} is {kind_of(mode)}; a file cannot be written there")
    check_output_dir(path.parent, what, create=False)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str, *, create: bool) -> Path:
    """A folder files will be written into, absolute: a writable directory on a disk that is
    not full, created with its parents where `create` (else it must exist); UserError naming
    `what` otherwise (StorageError for a full disk)."""
    path = Path(os.path.abspath(os.path.expanduser(path)))
    existing = check_place(path, what)
    if existing != path:
        if not create:
            raise UserError(f"{what}: folder {path} does not exist")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(what, path, exc) from None
    return path


def check_place(path: str | os.PathLike[str], what: str) -> Path:
    """Check, without creating anything, that a folder could be written at `path`: the path
    fits, its nearest existing part is a writable folder, and its disk is not full. Returns
    that nearest existing folder; UserError naming `what` otherwise."""
    path = Path(os.path.abspath(os.path.expanduser(path)))
    check_fits(path, what)
    existing = next(p for p in (path, *path.parents) if os.path.lexists(p))  # "/" exists
    if not existing.is_dir():
        under = "" if existing == path else f" (so {path} cannot be a folder)"
        raise UserError(f"{what}: {existing} is not a folder{under}")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        why = "a read-only file system" if read_only else "permission denied"
        raise UserError(f"{what}: folder {existing} is not writable ({why})")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise StorageError(f"{what}: the disk holding {existing} is full ({free} bytes free)")
    return existing


def can_write_in(folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` is, or could be created as, a folder this process can write in."""
    try:
        check_place(folder, "")
    except UserError:
        return False
    return True


def write_error(what: str, path: Path, exc: OSError) -> UserError:
    """A failed write as one line: the storage's fault (disk full, quota, I/O) is a
    StorageError (exit 1), anything else the user's (exit 2)."""
    reason = exc.strerror or str(exc)
    if exc.errno in STORAGE_ERRNOS:
        return StorageError(f"{what}: cannot write {path} ({reason}); nothing was written there")
    return UserError(f"{what}: cannot write {path} ({reason})")


@contextlib.contextmanager
def output(
    path: str | os.PathLike[str], what: str, mode: str = "wb", **open_kwargs: Any
) -> Iterator[IO]:
    """Write `path` atomically after check_output_file; any OSError while writing (a full disk)
    becomes one line naming `what`, and the old file, if any, is left as it was."""
    path = check_output_file(path, what)
    try:
        with atomic_output(path, mode, **open_kwargs) as f:
            yield f
    except OSError as exc:
        raise write_error(what, path, exc) from None


def open_stored(fs: Any, path: str) -> Any:
    """`fs.open_input_stream(path)` (a pyarrow filesystem: local or a storage URI) for a regular
    file only: FileNotFoundError if there is none, an OSError naming what stands there instead
    (a FIFO would block the read forever) otherwise; callers handle both as they do a failed
    read."""
    import pyarrow.fs

    kind = fs.get_file_info(path).type
    if kind == pyarrow.fs.FileType.NotFound:
        raise FileNotFoundError(errno.ENOENT, "no such file", path)
    if kind != pyarrow.fs.FileType.File:
        what = "a folder" if kind == pyarrow.fs.FileType.Directory else "not a regular file"
        if isinstance(fs, pyarrow.fs.LocalFileSystem):
            with contextlib.suppress(OSError):
                what = kind_of(os.stat(path).st_mode)
        raise OSError(errno.EINVAL, f"{what}, not a regular file; not read", path)
    return fs.open_input_stream(path)
