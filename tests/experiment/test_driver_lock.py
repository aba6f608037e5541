"""The driver lease for storage URIs (object stores have no locks), on a real local file system
through pyarrow.fs, the layer the lease uses for s3:// and gs:// too."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.fs
import pytest

from tune_cilp.core.errors import UserError
from tune_cilp.experiment import lock
from tune_cilp.experiment.lock import LEASE_FILE, LEASE_SETTLE_S, LEASE_STALE_S, Lease


def lease(tmp_path: Path) -> Lease:
    fs = pyarrow.fs.LocalFileSystem()
    return Lease(fs, str(tmp_path / LEASE_FILE), "s3://bucket/experiment")


@pytest.mark.parametrize("age_s", [0.0, 60.0, LEASE_STALE_S + 1])
def test_uri_lease_is_refused_while_fresh_and_taken_over_when_stale(
    tmp_path: Path, age_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tune_cilp.experiment.lock.LEASE_SETTLE_S", 0.0)
    holder = {"host": "other-host", "pid": 4242, "since": 0.0, "token": "theirs"}
    holder["renewed"] = time.time() - age_s
    (tmp_path / LEASE_FILE).write_text(json.dumps(holder))
    mine = lease(tmp_path)
    if age_s < LEASE_STALE_S:
        with pytest.raises(UserError, match="another driver is running this experiment "
                           r"\(pid 4242 on other-host"):  # fmt: skip
            mine.acquire()
        assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == "theirs"
        return
    mine.acquire()
    try:
        assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == mine.token
        with pytest.raises(UserError, match="another driver"):
            lease(tmp_path).acquire()
    finally:
        mine.release()
    assert not (tmp_path / LEASE_FILE).exists()


RACE_TIMEOUT_S = 30.0  # a racer stuck longer than this: the schedule is broken, not slow


class Referee(pyarrow.fs.FSSpecHandler):
    """An object store in memory (fsspec's, reached as a pyarrow filesystem the way pyarrow
    reaches the stores it has no client of its own for) on which two drivers, threads "A" and
    "B", race for a stale lease in the order that beats a lease without its settle:

    1. neither writes before both have read the stale lease (both decide to take it over);
    2. A writes; B writes only once A is settling, or, when A does not settle, once A has
       re-read the lease and seen its own token.

    Only the racers' calls are held; the test's own go straight through."""

    def __init__(self) -> None:
        super().__init__(fsspec.filesystem("memory"))
        self.both_read = threading.Barrier(2, timeout=RACE_TIMEOUT_S)
        self.b_may_write = threading.Event()  # A is settling, or A has checked
        self.reads: dict[str, int] = {"A": 0, "B": 0}

    def open_input_stream(self, path: str) -> Any:
        stream = super().open_input_stream(path)  # fsspec's memory file: the bytes as of now
        racer = threading.current_thread().name
        if racer in self.reads:
            self.reads[racer] += 1
            if self.reads[racer] == 1:
                self.both_read.wait()
            elif racer == "A":
                self.b_may_write.set()
        return stream

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        if threading.current_thread().name == "B":
            assert self.b_may_write.wait(RACE_TIMEOUT_S), "A never settled nor checked"
        return super().open_output_stream(path, metadata)


class SettleClock:
    """The lock module's `time`, but its settle (a sleep of LEASE_SETTLE_S after writing)
    lasts exactly until both racers have written and started to settle: what a settle longer
    than the gap between two racing drivers' writes gives. A zero settle returns at once."""

    def __init__(self, referee: Referee) -> None:
        self.referee = referee
        self.both_settling = threading.Barrier(2, timeout=RACE_TIMEOUT_S)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if threading.current_thread().name == "A":
            self.referee.b_may_write.set()
        self.both_settling.wait()


@pytest.mark.parametrize(
    ("settle_s", "winners"),
    [
        (LEASE_SETTLE_S, ["B"]),  # the last writer, seen by both after settling
        (0.0, ["A", "B"]),  # no settle: A checks before B writes, and both drive
    ],
)
def test_two_drivers_racing_for_a_stale_lease_leave_one_winner(
    settle_s: float, winners: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    referee = Referee()
    fs = pyarrow.fs.PyFileSystem(referee)
    path = f"/{uuid.uuid4().hex}/{LEASE_FILE}"
    stale = {"host": "gone", "pid": 4242, "token": "theirs", "renewed": time.time() - 1e4}
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(stale).encode())
    monkeypatch.setattr(lock, "LEASE_SETTLE_S", settle_s)
    monkeypatch.setattr(lock, "time", SettleClock(referee))

    leases = {name: Lease(fs, path, "gs://bucket/experiment") for name in ("A", "B")}
    outcome: dict[str, BaseException | None] = {}

    def race(name: str) -> None:
        try:
            leases[name].acquire()
            outcome[name] = None
        except BaseException as exc:  # noqa: BLE001 -- the test reads each racer's outcome
            outcome[name] = exc

    racers = [threading.Thread(target=race, args=(name,), name=name) for name in leases]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(2 * RACE_TIMEOUT_S)
    try:
        assert sorted(outcome) == ["A", "B"], f"a racer is stuck: {outcome}"
        assert [name for name, exc in sorted(outcome.items()) if exc is None] == winners, outcome
        for exc in outcome.values():
            if exc is not None:
                assert isinstance(exc, UserError) and "another driver is running" in str(exc)
        with fs.open_input_stream(path) as f:
            holder = json.loads(f.readall())
        assert holder["token"] == leases[winners[-1]].token
    finally:
        for name, exc in outcome.items():
            if exc is None:
                leases[name].release()  # stops its renewal thread
