"""W&B set-up for a run: never online without a key, never a key passed on when offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tune_cilp.experiment.wandb_setup import PROJECT, resolve_mode, wandb_env, wandb_init_kwargs


@pytest.fixture
def clean_env(restore_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_online_without_a_key_falls_back_to_offline(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert resolve_mode("online") == "offline"
    assert "no API key" in capsys.readouterr().out
    os.environ["WANDB_API_KEY"] = "k" * 40
    assert resolve_mode("online") == "online"
    assert resolve_mode("disabled") == "disabled"


def test_offline_env_drops_the_key_and_never_prompts(clean_env: None) -> None:
    os.environ["WANDB_API_KEY"] = "k" * 40
    env = wandb_env("offline")
    assert env["WANDB_MODE"] == "offline" and env["WANDB_SILENT"] == "true"
    assert "WANDB_API_KEY" not in os.environ and "k" * 40 not in str(env)


def test_trial_kwargs_name_the_project_and_never_carry_a_key(
    clean_env: None, tmp_path: Path
) -> None:
    os.environ["WANDB_API_KEY"] = "k" * 40
    kwargs = wandb_init_kwargs("online", tmp_path)
    assert kwargs == {"project": PROJECT, "mode": "online", "resume": "allow", "dir": str(tmp_path)}
    assert wandb_init_kwargs("disabled", tmp_path) is None
