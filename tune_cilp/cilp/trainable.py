"""The Ray Tune function trainable of every CILP stage: one trial = one stage trainer, one
report + checkpoint (the full trainer state, ``state.pt``) per epoch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from tune_cilp.checkpoint import load_checkpoint, save_checkpoint
from tune_cilp.cilp.stages import make_trainer
from tune_cilp.data import CilpArrays
from tune_cilp.peak_memory import peak_mb, reset_peak
from tune_cilp.train import configure_process
from tune_cilp.trainable import STATE_FILE, _finish_wandb, _granted_resources, _start_wandb


def train_stage(
    config: dict[str, Any], data: CilpArrays, wandb_kwargs: dict[str, str] | None = None
) -> None:
    """Train one stage trial (``config["stage"]`` says which); see tune_cilp.trainable.train_cilp
    for how data and W&B arguments arrive."""
    threads, gpu_fraction = _granted_resources()
    configure_process(threads, gpu_fraction=gpu_fraction or None)
    trainer = make_trainer(config, data)
    reset_peak(trainer.device)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            trainer.load_state_dict(load_checkpoint(Path(ckpt_dir) / STATE_FILE))
    static = {
        "num_parameters": trainer.num_parameters,
        "precision": trainer.precision,
        "device": str(trainer.device),
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "threads": threads,
        "gpu_fraction": gpu_fraction,
    }
    run = _start_wandb({**config, **static}, wandb_kwargs) if wandb_kwargs else None
    try:
        while not trainer.done:
            metrics = {**trainer.run_epoch(), "peak_memory_mb": peak_mb(trainer.device)}
            if run is not None:
                run.log(metrics, step=int(metrics["epoch"]))
                if trainer.done:
                    _finish_wandb(run)
                    run = None
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(Path(tmp) / STATE_FILE, trainer.state_dict())
                tune.report({**metrics, **static}, checkpoint=tune.Checkpoint.from_directory(tmp))
    finally:
        if run is not None:
            _finish_wandb(run)
