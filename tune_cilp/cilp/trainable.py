"""The Ray Tune function trainable of every CILP stage: one trial = one stage trainer, with the
fusion trainable's loop (one report + checkpoint of the full trainer state per epoch)."""

from __future__ import annotations

from typing import Any

from tune_cilp.cilp.stages import make_trainer
from tune_cilp.data import CilpArrays
from tune_cilp.trainable import run_trial


def train_stage(
    config: dict[str, Any], data: CilpArrays, wandb_kwargs: dict[str, str] | None = None
) -> None:
    """Train one stage trial (``config["stage"]`` says which); see tune_cilp.trainable.train_cilp
    for how data and W&B arguments arrive."""
    run_trial(lambda: make_trainer(config, data), config, wandb_kwargs, {})
