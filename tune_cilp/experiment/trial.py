"""The trial loop every wing's Tune function trainable calls: one trial = one trainer, one
report + checkpoint per epoch.

The driver imports this module to hand the function to Tune, so torch is imported only inside
the trial (the functions below): the driver never needs it, and importing it there costs the
run's start-up ~2 s.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune


def _granted_resources() -> tuple[int, float]:
    """(CPU threads, GPU fraction) this trial was granted by Tune."""
    granted = tune.get_context().get_trial_resources().required_resources
    return max(1, int(granted.get("CPU", 1))), float(granted.get("GPU", 0.0))


# --checkpoint-every's default: every epoch. Measured on 2 CPU cores (benchmarks/README.md), a
# checkpoint (the state written, Tune's copy, the report's round trip) costs 0.14-0.16 s against
# 3-4 s epochs; and only a checkpoint per epoch keeps a trial retried within a run
# (--max-failures) from reporting the epochs after its last checkpoint a second time. Where
# epochs are as short as a checkpoint (a GPU; not measured here), spacing them is the user's
# choice.
CHECKPOINT_EVERY = 1


def run_trial(
    make_trainer: Callable[[], Any],
    config: dict[str, Any],
    wandb_kwargs: dict[str, str] | None,
    info: dict[str, Any],
    checkpoint_every: int | None = None,
) -> None:
    """The trial loop of every trainer (fusion or a CILP stage): this process set up for the
    granted resources, the trainer restored from Tune's checkpoint if there is one, then one
    report per epoch, with a checkpoint (``state.pt``, the full trainer state) every
    `checkpoint_every` epochs (None: CHECKPOINT_EVERY) and at the last, W&B alongside; at the end,
    however it ends, the trainer's device memory is released for the next trial.

    The trainer is a TrainingLoop (epochs(), done, state_dict(), load_state_dict(),
    predictions(), device, precision, num_parameters); `info` goes into every report with the
    trial's constants. A classifier's per-scene validation scores go into each checkpoint as
    well (PREDICTIONS_FILE, tune_cilp.core.predictions), taken from the same state as state.pt.
    """
    from tune_cilp.training.device import configure_process, release_memory

    threads, gpu_fraction = _granted_resources()
    configure_process(threads, gpu_fraction=gpu_fraction or None)
    trainer = make_trainer()
    device = trainer.device
    try:
        _train(trainer, config, wandb_kwargs, info, checkpoint_every, threads, gpu_fraction)
    finally:  # stopped early (ASHA), failing or done: its memory back to the device
        del trainer
        release_memory(device)


def _train(
    trainer: Any,
    config: dict[str, Any],
    wandb_kwargs: dict[str, str] | None,
    info: dict[str, Any],
    checkpoint_every: int | None,
    threads: int,
    gpu_fraction: float,
) -> None:
    from tune_cilp.core.checkpoint import STATE_FILE, load_checkpoint, save_checkpoint
    from tune_cilp.core.predictions import write_packed_predictions, write_predictions
    from tune_cilp.training.peak_memory import peak_mb, reset_peak

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
        **info,
    }
    # W&B gets the trial config (+ the run's constants) once and the numeric metrics per epoch.
    run = _start_wandb({**config, **static}, wandb_kwargs) if wandb_kwargs else None
    try:
        for epoch in trainer.epochs():
            metrics = {**epoch, "peak_memory_mb": peak_mb(trainer.device)}
            if run is not None:
                run.log(metrics, step=int(metrics["epoch"]))
                if trainer.done:  # before the last report: after it, Tune may end this process
                    _finish_wandb(run)
                    run = None
            if not checkpoint_due(trainer.epoch, trainer.done, checkpoint_every):
                tune.report({**metrics, **static})  # re-trained after a resume, reported once
                continue
            with tempfile.TemporaryDirectory() as tmp:  # tune.report copies it into the experiment
                save_checkpoint(Path(tmp) / STATE_FILE, trainer.state_dict(), atomic=False)
                predictions = trainer.predictions()
                if isinstance(predictions, dict):  # packed seeds (--pack): one record each
                    write_packed_predictions(tmp, predictions)
                elif predictions is not None:
                    write_predictions(tmp, predictions)
                tune.report({**metrics, **static}, checkpoint=tune.Checkpoint.from_directory(tmp))
    finally:  # a trial stopped early (ASHA) or failing still closes its W&B run
        if run is not None:
            _finish_wandb(run)


def checkpoint_due(epoch: int, done: bool, every: int | None) -> bool:
    """Whether epoch `epoch`'s report carries a checkpoint: every `every` epochs (None:
    CHECKPOINT_EVERY) and the last."""
    return done or epoch % (every or CHECKPOINT_EVERY) == 0


def _start_wandb(config: dict[str, Any], wandb_kwargs: dict[str, str]) -> Any:
    # Imported here: W&B costs a trial process about a second of start-up, even when disabled.
    from ray.air.integrations.wandb import setup_wandb

    run = setup_wandb(config, **wandb_kwargs)  # id = trial id, group = experiment name
    atexit.register(_teardown_quietly)  # runs before W&B's own exit hook (atexit is LIFO)
    return run


def _finish_wandb(run: Any) -> None:
    import wandb

    run.finish()
    wandb.teardown()  # now, not at exit, when Ray may already have ended W&B's service process
    atexit.unregister(_teardown_quietly)


def _teardown_quietly() -> None:
    # A trial stopped early (ASHA) can reach process exit with its run still open after W&B's
    # service process is gone; W&B's exit hook would then print a traceback for nothing lost
    # (the run's records are already on disk).
    import wandb

    with contextlib.suppress(Exception):
        wandb.teardown()
