"""One driver per experiment: a lock held for the driver's lifetime.

Two drivers on one experiment both "resume" it: both train every epoch, rows replace each other
in result.json and checkpoints vanish under the other. So the runner takes this lock before it
touches anything:

- local (and NFS) storage: an OS file lock (flock) on ``.driver.lock`` in the experiment
  directory. The kernel releases it when the process dies, however it dies.
- storage URIs (s3://, gs://, ...): object stores have no locks, so a lease object
  ``.driver.lease.json`` with host, pid, a token and the time, renewed every LEASE_RENEW_S
  seconds. Another driver takes it over only once it is LEASE_STALE_S seconds old.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow.fs

from tune_cilp.core.errors import UserError
from tune_cilp.core.json_shape import json_object, matches
from tune_cilp.core.path_guard import open_stored

LOCK_FILE = ".driver.lock"
LEASE_FILE = ".driver.lease.json"
LEASE_RENEW_S = 30.0
LEASE_STALE_S = 120.0  # four missed renewals: the holder is gone
LEASE_SETTLE_S = 2.0  # re-read after writing: two drivers racing for a stale lease see one winner


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _describe(holder: dict[str, Any]) -> str:
    stamp = holder.get("since")  # what another process wrote: any JSON
    since = time.strftime("%H:%M:%S", time.localtime(stamp if matches(stamp, float) else 0))
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since}"


def _busy(experiment: str, holder: dict[str, Any]) -> UserError:
    return UserError(
        f"{experiment}: another driver is running this experiment ({_describe(holder)}); "
        "wait for it to finish or use another --name"
    )


@contextlib.contextmanager
def local_lock(experiment_dir: str) -> Iterator[None]:
    """Hold an flock on the experiment directory's lock file; UserError if another driver has it."""
    path = os.path.join(experiment_dir, LOCK_FILE)
    try:
        os.makedirs(experiment_dir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the driver lock ({exc.strerror})") from None
    with os.fdopen(fd, "r+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json_object(fh.read() or "{}")
            except ValueError:
                holder = {}
            raise _busy(experiment_dir, holder) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(_holder()))
            fh.flush()
        except OSError as exc:
            raise UserError(f"{path}: cannot write the driver lock ({exc.strerror})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Lease:
    """A renewable lease object on a pyarrow file system (what an object store offers)."""

    def __init__(self, fs: pyarrow.fs.FileSystem, path: str, experiment: str):
        self.fs, self.path, self.experiment = fs, path, experiment
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            with open_stored(self.fs, self.path) as f:
                return json_object(f.readall())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: treat as a holder we know nothing about (it may go stale)

    def _write(self) -> None:
        record = {**_holder(), "token": self.token, "renewed": time.time()}
        with self.fs.open_output_stream(self.path) as out:
            out.write(json.dumps(record).encode())

    def acquire(self) -> None:
        """Take the lease, or UserError naming the live holder."""
        current = self._read()
        if current is not None:
            renewed = current.get("renewed")
            age = time.time() - (renewed if matches(renewed, float) else 0.0)
            if age < LEASE_STALE_S:
                raise _busy(self.experiment, current)
        try:
            self._write()
        except OSError as exc:
            raise UserError(f"{self.path}: cannot write the driver lease ({exc})") from None
        time.sleep(LEASE_SETTLE_S)
        winner = self._read() or {}
        if winner.get("token") != self.token:
            raise _busy(self.experiment, winner)
        self._thread = threading.Thread(target=self._renew, name="driver-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            with contextlib.suppress(OSError):
                self._write()

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if (self._read() or {}).get("token") == self.token:
            with contextlib.suppress(OSError):
                self.fs.delete_file(self.path)


@contextlib.contextmanager
def hold_experiment(experiment: str, local: bool) -> Iterator[None]:
    """Hold the experiment's driver lock (local) or lease (URI) for the ``with`` block."""
    if local:
        with local_lock(experiment):
            yield
        return
    fs, path = pyarrow.fs.FileSystem.from_uri(experiment)
    fs.create_dir(path, recursive=True)
    lease = Lease(fs, f"{path.rstrip('/')}/{LEASE_FILE}", experiment)
    lease.acquire()
    try:
        yield
    finally:
        lease.release()
