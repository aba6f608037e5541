"""The one guard for paths (core/path_guard.py), JSON shapes (core/json_shape.py) and the places
Ray writes (experiment/ray_places.py), in process: each refusal is one UserError, nothing it
checks is opened (a FIFO never blocks), and a failed write leaves the old file as it was."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import pyarrow.fs
import pytest

from tune_cilp.core.errors import StorageError, UserError
from tune_cilp.core.json_shape import check_fields, json_object, matches
from tune_cilp.core.path_guard import (
    can_write_in,
    check_fits,
    check_output_dir,
    check_output_file,
    check_readable_file,
    open_stored,
    output,
)
from tune_cilp.experiment.identity import ExperimentMeta
from tune_cilp.experiment.lock import Lease
from tune_cilp.experiment.ray_places import check_temp_dir, keep_token_off_home
from tune_cilp.experiment.ray_session import SESSION_FILE, reap_dead_session
from tune_cilp.experiment.storage import Location


@pytest.fixture
def specials(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a socket, a character device (a link to /dev/zero) and a folder."""
    fifo, sock, device, folder = (tmp_path / n for n in ("fifo", "sock", "device", "folder"))
    os.mkfifo(fifo)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
    device.symlink_to("/dev/zero")
    folder.mkdir()
    return {"a named pipe (FIFO)": fifo, "a socket": sock, "a character device": device,
            "a folder": folder}  # fmt: skip


def test_non_regular_files_are_refused_without_being_opened(specials: dict[str, Path]) -> None:
    local = pyarrow.fs.LocalFileSystem()
    for kind, path in specials.items():
        expected = f"{path}: {kind}, but a PNG image is expected here; not read"
        with pytest.raises(UserError, match=re.escape(expected)):
            check_readable_file(path, "a PNG image")
        with pytest.raises(OSError, match=re.escape(kind)):
            open_stored(local, str(path))
        with pytest.raises(UserError, match=re.escape(f"is {kind}; a file cannot be written")):
            check_output_file(path, "--csv")
    regular = specials["a folder"] / "file.txt"
    regular.write_text("x")
    assert check_readable_file(regular) == regular
    with open_stored(local, str(regular)) as f:
        assert f.readall() == b"x"
    with pytest.raises(FileNotFoundError):
        open_stored(local, str(regular) + ".missing")


def test_names_and_paths_longer_than_the_filesystem_allows(tmp_path: Path) -> None:
    check_fits(tmp_path / ("n" * 255), "--name")
    with pytest.raises(UserError, match="--name: the name n+... is 256 bytes; .* allows 255"):
        check_fits(tmp_path / ("n" * 256), "--name")
    deep = tmp_path.joinpath(*["d" * 200] * 22)
    with pytest.raises(UserError, match="--plots: the path is .* allows 4096"):
        check_fits(deep, "--plots")
    with pytest.raises(UserError, match="and 512 for what goes under it"):
        check_fits(tmp_path.joinpath(*["d" * 200] * 18), "--name", reserve=512)
    with pytest.raises(UserError, match="the name"):  # checked before anything is made
        check_output_dir(tmp_path / ("n" * 300), "--plots", create=True)
    assert list(tmp_path.iterdir()) == []


def test_output_places_are_checked_before_writing(tmp_path: Path) -> None:
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(UserError, match=f"--plots: {afile} is not a folder \\(so "):
        check_output_dir(afile / "sub", "--plots", create=True)
    with pytest.raises(UserError, match="--csv: folder .*missing does not exist"):
        check_output_file(tmp_path / "missing" / "t.csv", "--csv")
    made = check_output_dir(tmp_path / "a" / "b", "--plots", create=True)
    assert made.is_dir()
    assert can_write_in(tmp_path / "new") and not can_write_in(afile / "sub")


def test_a_write_that_fails_on_the_storage_is_one_line_and_keeps_the_old_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    full = "--csv: cannot write .*No space left on device"
    with pytest.raises(StorageError, match=full), output(target, "--csv", "w") as f:
        f.write("new, half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the disk filled up here
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left
    with output(target, "--csv", "w") as f:
        f.write("new\n")
    assert target.read_text() == "new\n"


def test_json_of_the_wrong_shape_is_refused_like_a_syntax_error() -> None:
    assert json_object('{"a": 1}') == {"a": 1}
    for text in ("[]", "3", '"x"', "null"):
        with pytest.raises(ValueError, match="expected a JSON object"):
            json_object(text)
    assert matches([1, 2], list[int]) and not matches([1, "a"], list[int])
    assert matches(3, float) and not matches(True, int) and matches(None, int | None)
    with pytest.raises(ValueError, match=r"'epochs' is \"3\", expected int"):
        check_fields(ExperimentMeta, {"epochs": "3"})
    for bad in ([], {"space": 1}, {"seeds": [1, "2"]}, {"argv": "run"}, {"picks": [3]}):
        with pytest.raises(ValueError):
            ExperimentMeta.from_dict(bad)
    assert ExperimentMeta.from_dict({"space": "fusion", "epochs": 3}).epochs == 3


def test_records_of_the_wrong_shape_or_kind_do_not_break_the_driver(tmp_path: Path) -> None:
    """The Ray session record a killed driver left, and the lease another driver wrote, are
    read by the next driver: a list, a FIFO or a wrong field is ignored, not a traceback."""
    record = tmp_path / SESSION_FILE
    for text in ("[]", '{"processes": 3}', '{"processes": ["x", {"pid": "y"}]}'):
        record.write_text(text)
        assert reap_dead_session(str(tmp_path)) == 0
    record.unlink(missing_ok=True)
    os.mkfifo(record)
    assert reap_dead_session(str(tmp_path)) == 0  # returns: the FIFO was never opened

    fs = pyarrow.fs.LocalFileSystem()
    lease_path = str(tmp_path / "lease.json")
    for holder in ([1, 2], {"renewed": "soon", "since": "then", "pid": 1}):
        Path(lease_path).write_text(json.dumps(holder))
        lease = Lease(fs, lease_path, "exp")
        assert lease._read() == ({} if isinstance(holder, list) else holder)


def test_ray_temp_dir_is_checked_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # pytest's own are too long here
    afile = short / "file.txt"
    afile.write_text("x")
    monkeypatch.setenv("RAY_TMPDIR", str(afile / "ray"))
    with pytest.raises(UserError, match=r"Ray's temp dir \(RAY_TMPDIR=.*\): .* is not a folder"):
        check_temp_dir()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / ("t" * 60)))
    with pytest.raises(UserError, match="too long for Ray's sockets"):
        check_temp_dir()
    monkeypatch.delenv("RAY_TMPDIR")
    monkeypatch.setenv("TMPDIR", str(afile / "tmp"))
    with pytest.raises(UserError, match=r"\(TMPDIR="):
        check_temp_dir()
    monkeypatch.setenv("TMPDIR", str(short))
    check_temp_dir()
    assert sorted(p.name for p in short.iterdir()) == ["file.txt"]  # nothing made: Ray makes it
    shutil.rmtree(short)


def test_an_unwritable_home_gets_the_token_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for variable in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.setenv(variable, "")  # recorded, so the token set below is undone after
        monkeypatch.delenv(variable)
    monkeypatch.setenv("HOME", str(tmp_path))
    keep_token_off_home()  # writable: Ray saves its token there itself
    assert "RAY_AUTH_TOKEN" not in os.environ and capsys.readouterr().err == ""
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setenv("HOME", str(tmp_path / "file.txt" / "home"))
    keep_token_off_home()
    assert len(os.environ["RAY_AUTH_TOKEN"]) == 32
    err = capsys.readouterr().err
    assert err.startswith("note: ") and err.count("\n") == 1 and "RAY_AUTH_TOKEN_PATH" in err


def test_an_experiment_with_a_tuner_but_no_state_is_not_started(tmp_path: Path) -> None:
    """A stop between the Tuner's creation and Tune's first state save leaves tuner.pkl only:
    restoring that would run the trials without their search space, so it starts afresh."""
    location = Location(str(tmp_path), "exp")
    assert not location.started()
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "tuner.pkl").write_bytes(b"not read")
    assert not location.started()
    (tmp_path / "exp" / "experiment_state-2026-12-08_00-00-00.json").write_text("{}")
    assert location.started()
