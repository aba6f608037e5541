"""Weights & Biases for a Tune run: one W&B run per trial, never a prompt, never a stored key.

Each setting follows the ecosystem's order: the command-line flag, else W&B's own environment
variable (WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY, WANDB_DIR), else the tool's default.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tune_cilp.core.errors import UserError

PROJECT = "cilp-extended-assessment"
MODES = ("offline", "online", "disabled")
DEFAULT_MODE = "offline"
# WANDB_MODE values W&B accepts, by what they mean ("dryrun" and "run" are its old names).
ENV_MODES = {
    "offline": "offline",
    "dryrun": "offline",
    "online": "online",
    "run": "online",
    "disabled": "disabled",
}


@dataclass(frozen=True)
class WandbSettings:
    """Where and how the trials log to W&B, resolved (see resolve_wandb)."""

    mode: str  # online, offline or disabled
    project: str = PROJECT
    entity: str | None = None  # None: the key's default entity
    dir: str | None = None  # where W&B writes (<dir>/wandb/); None: the experiment directory


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:  # `wandb login` stores the key in ~/.netrc
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb(
    mode: str | None = None,
    project: str | None = None,
    entity: str | None = None,
    directory: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> WandbSettings:
    """Each setting from its flag (None: not given), else its WANDB_* variable, else the
    default; online only when a key exists (else offline, said in one line)."""
    if mode is None:
        given = environ.get("WANDB_MODE", "").strip().lower()
        if given and given not in ENV_MODES:
            raise UserError(f"WANDB_MODE={given!r}: not a W&B mode ({', '.join(MODES)})")
        mode = ENV_MODES.get(given, DEFAULT_MODE)
    if mode not in MODES:
        raise UserError(f"--wandb {mode!r}: not one of {', '.join(MODES)}")
    if mode == "online" and not _has_api_key():
        print("W&B: no API key found (WANDB_API_KEY or `wandb login`): logging offline")
        mode = "offline"
    directory = directory or environ.get("WANDB_DIR") or None
    return WandbSettings(
        mode=mode,
        project=project or environ.get("WANDB_PROJECT") or PROJECT,
        entity=entity or environ.get("WANDB_ENTITY") or None,
        dir=None if directory is None else os.path.abspath(os.path.expanduser(directory)),
    )


def wandb_env(settings: WandbSettings) -> dict[str, str]:
    """Environment for the driver and every Ray worker; set before Ray starts.

    Offline and disabled runs drop WANDB_API_KEY from this process so that it cannot reach a
    worker's environment or any file.
    """
    if settings.mode != "online":
        os.environ.pop("WANDB_API_KEY", None)
    env = {"WANDB_MODE": settings.mode, "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}
    os.environ.update(env)
    return env


def wandb_init_kwargs(
    settings: WandbSettings, experiment_dir: Path | None
) -> dict[str, str] | None:
    """Arguments for ``ray.air.integrations.wandb.setup_wandb`` in each trial; None = no W&B.

    W&B runs inside the trial (one run per trial: id = trial id, group = experiment name)
    rather than in Ray's WandbLoggerCallback, because that callback hands WANDB_API_KEY to a Ray
    actor through its runtime_env, which Ray writes into its runtime_env_agent.log. Here the key
    only ever travels as an inherited environment variable.
    experiment_dir: the local experiment directory, where W&B writes unless settings.dir says
    otherwise; None (remote storage) = the trial's working directory.
    """
    if settings.mode == "disabled":
        return None
    kwargs = {"project": settings.project, "mode": settings.mode, "resume": "allow"}
    if settings.entity is not None:
        kwargs["entity"] = settings.entity
    directory = settings.dir or (None if experiment_dir is None else str(experiment_dir))
    if directory is not None:
        kwargs["dir"] = directory
    return kwargs
