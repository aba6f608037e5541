"""Weights & Biases for a Tune run: one W&B run per trial, never a prompt, never a stored key."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

PROJECT = "cilp-extended-assessment"


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:  # `wandb login` stores the key in ~/.netrc
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(requested: str) -> str:
    """The W&B mode to use: online only when asked for and a key exists; else offline/disabled."""
    if requested == "online" and not _has_api_key():
        print("W&B: no API key found (WANDB_API_KEY or `wandb login`): logging offline")
        return "offline"
    return requested


def wandb_env(mode: str) -> dict[str, str]:
    """Environment for the driver and every Ray worker; set before Ray starts.

    Offline and disabled runs drop WANDB_API_KEY from this process so that it cannot reach a
    worker's environment or any file.
    """
    if mode != "online":
        os.environ.pop("WANDB_API_KEY", None)
    env = {"WANDB_MODE": mode, "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}
    os.environ.update(env)
    return env


def wandb_init_kwargs(mode: str, local_dir: Path | None) -> dict[str, str] | None:
    """Arguments for ``ray.air.integrations.wandb.setup_wandb`` in each trial; None = no W&B.

    W&B runs inside the trial (one run per trial: id = trial id, group = experiment name)
    rather than in Ray's WandbLoggerCallback, because that callback hands WANDB_API_KEY to a Ray
    actor through its runtime_env, which Ray writes into its runtime_env_agent.log. Here the key
    only ever travels as an inherited environment variable.
    local_dir: where W&B writes (``<local_dir>/wandb/``); None = the trial's working directory.
    """
    if mode == "disabled":
        return None
    kwargs = {"project": PROJECT, "mode": mode, "resume": "allow"}
    if local_dir is not None:
        kwargs["dir"] = str(local_dir)
    return kwargs
