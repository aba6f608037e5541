"""The driver lease for storage URIs (object stores have no locks), on a real local file system
through pyarrow.fs, the layer the lease uses for s3:// and gs:// too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.fs
import pytest

from tune_cilp.core.errors import UserError
from tune_cilp.experiment.lock import LEASE_FILE, LEASE_STALE_S, Lease


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
