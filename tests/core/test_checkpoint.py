"""Checkpoints: atomic writes, safe loads, one-line errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tune_cilp.core.checkpoint import load_checkpoint, save_checkpoint
from tune_cilp.core.errors import UserError


def _state() -> dict:
    return {
        "config": {"variant": "concat", "pos_weight": None, "lr": 1e-3},
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "rng": {"torch": torch.get_rng_state()},
        "epoch": 3,
        "best_val_loss": float("inf"),
        "history": [{"epoch": 1, "val_loss": 0.5}],
    }


@pytest.mark.parametrize("atomic", [True, False])
def test_round_trip(tmp_path: Path, atomic: bool) -> None:
    path = save_checkpoint(tmp_path / "sub" / "state.pt", _state(), atomic=atomic)
    loaded = load_checkpoint(path)
    assert loaded.keys() == _state().keys()
    assert torch.equal(loaded["model"]["w"], _state()["model"]["w"])
    assert loaded["history"] == [{"epoch": 1, "val_loss": 0.5}]
    assert loaded["best_val_loss"] == float("inf")
    assert os.listdir(tmp_path / "sub") == ["state.pt"]  # no temporary file left behind


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "state.pt", _state())
    with pytest.raises(Exception):  # noqa: B017  (whatever pickle raises for a lambda)
        save_checkpoint(path, {"fn": lambda: 0})
    assert load_checkpoint(path)["epoch"] == 3
    assert os.listdir(tmp_path) == ["state.pt"]


class _Payload:
    """Pickles to a call of os.system: loading it with full pickle would run a command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(UserError, match="evil.pt: not a loadable checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "checkpoint file not found"),
        (b"this is not a checkpoint", "not a loadable checkpoint"),
        ("truncated", "not a loadable checkpoint"),
        ("tensor", "not a checkpoint"),
    ],
)
def test_bad_files_raise_one_line(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "state.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncated":
        save_checkpoint(path, _state())
        path.write_bytes(path.read_bytes()[:200])
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    with pytest.raises(UserError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
