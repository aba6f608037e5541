"""W&B set-up for a run: never online without a key, never a key passed on when offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tune_cilp.core.errors import UserError
from tune_cilp.experiment.wandb_setup import (
    PROJECT,
    WandbSettings,
    resolve_wandb,
    wandb_env,
    wandb_init_kwargs,
)
from tune_cilp.run_args import build_parser, parse_request


@pytest.fixture
def clean_env(restore_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_online_without_a_key_falls_back_to_offline(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert resolve_wandb("online", environ={}).mode == "offline"
    assert "no API key" in capsys.readouterr().out
    os.environ["WANDB_API_KEY"] = "k" * 40
    assert resolve_wandb("online", environ={}).mode == "online"
    assert resolve_wandb("disabled", environ={}).mode == "disabled"


def test_flag_then_environment_then_default(clean_env: None, tmp_path: Path) -> None:
    os.environ["WANDB_API_KEY"] = "k" * 40
    assert resolve_wandb(environ={}) == WandbSettings(mode="offline", project=PROJECT)
    env = {
        "WANDB_MODE": "disabled",
        "WANDB_PROJECT": "p-env",
        "WANDB_ENTITY": "e-env",
        "WANDB_DIR": str(tmp_path / "env"),
    }
    assert resolve_wandb(environ=env) == WandbSettings(
        "disabled", "p-env", "e-env", str(tmp_path / "env")
    )
    flags = resolve_wandb("online", "p-flag", "e-flag", str(tmp_path / "flag"), environ=env)
    assert flags == WandbSettings("online", "p-flag", "e-flag", str(tmp_path / "flag"))
    assert resolve_wandb(environ={"WANDB_MODE": "dryrun"}).mode == "offline"  # W&B's old name
    with pytest.raises(UserError, match=r"^WANDB_MODE='sometimes': not a W&B mode"):
        resolve_wandb(environ={"WANDB_MODE": "sometimes"})


def test_the_command_line_reads_the_environment(clean_env: None, tmp_path: Path) -> None:
    os.environ.update(WANDB_MODE="disabled", WANDB_PROJECT="p-env")
    args = build_parser().parse_args(["--storage-path", str(tmp_path)])
    request = parse_request(args, [], 0.0)
    assert request.wandb == WandbSettings("disabled", "p-env")
    args = build_parser().parse_args(["--wandb", "offline", "--wandb-project", "p-flag"])
    assert parse_request(args, [], 0.0).wandb == WandbSettings("offline", "p-flag")


def test_offline_env_drops_the_key_and_never_prompts(clean_env: None) -> None:
    os.environ["WANDB_API_KEY"] = "k" * 40
    env = wandb_env(WandbSettings("offline"))
    assert env["WANDB_MODE"] == "offline" and env["WANDB_SILENT"] == "true"
    assert "WANDB_API_KEY" not in os.environ and "k" * 40 not in str(env)


def test_trial_kwargs_name_the_project_and_never_carry_a_key(
    clean_env: None, tmp_path: Path
) -> None:
    os.environ["WANDB_API_KEY"] = "k" * 40
    kwargs = wandb_init_kwargs(WandbSettings("online"), tmp_path)
    assert kwargs == {"project": PROJECT, "mode": "online", "resume": "allow", "dir": str(tmp_path)}
    own = WandbSettings("offline", "p", "e", str(tmp_path / "w"))
    assert wandb_init_kwargs(own, tmp_path) == {
        **{"project": "p", "mode": "offline", "resume": "allow"},
        **{"entity": "e", "dir": str(tmp_path / "w")},
    }
    assert wandb_init_kwargs(WandbSettings("online"), None) == {
        "project": PROJECT,
        "mode": "online",
        "resume": "allow",
    }
    assert wandb_init_kwargs(WandbSettings("disabled"), tmp_path) is None
