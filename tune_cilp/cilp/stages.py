"""The CILP stages, in chain order: one registry of what the driver, the selection and the
analysis need to know about each (docs/CILP.md).

A stage's name and trial config are its config class's (tune_cilp/cilp/stage_configs.py);
its trainer is found from that class by tune_cilp.cilp.stage_trainers.make_trainer. The registry
adds what only the chain needs: the stage it continues from, the config key naming that
stage's checkpoint, and what it reports each epoch (status table, analysis).
"""

from __future__ import annotations

from dataclasses import dataclass

from tune_cilp.cilp.stage_configs import (
    ClassifierConfig,
    ContrastiveConfig,
    ProjectorConfig,
    StageConfig,
    checkpoint_key,
)
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import AT_BEST_EPOCH, EPOCH_METRICS, Metric, status_columns

BASELINES = "baselines"  # the reference models' experiment, beside the stages

# What every stage reports each epoch besides its own validation numbers (shared with fusion).
_COMMON = tuple(
    EPOCH_METRICS[k] for k in ("epoch", "train_loss", "lr", "epoch_time_s", "samples_per_s")
)
_BEST = tuple(EPOCH_METRICS[k] for k in ("best_val_loss", "best_epoch"))


@dataclass(frozen=True)
class Stage:
    """One stage of the chain."""

    config: type[StageConfig]
    validation: tuple[Metric, ...]  # what it reports each epoch beyond _COMMON and _BEST
    upstream: Stage | None = None  # the stage whose best trial it continues from

    @property
    def name(self) -> str:
        return self.config.stage

    @property
    def upstream_key(self) -> str | None:
        """The config key holding the upstream trial's checkpoint path."""
        return None if self.upstream is None else checkpoint_key(self.upstream.name)

    @property
    def epoch_metrics(self) -> tuple[Metric, ...]:
        return (*_COMMON, *self.validation, *_BEST)

    @property
    def status_columns(self) -> dict[str, str]:
        return status_columns(self.epoch_metrics)


CONTRASTIVE = Stage(
    ContrastiveConfig,
    (
        Metric("val_loss", "Contrastive Validation Loss", ".4g", "min", column="val_loss"),
        Metric("val_top1_rgb_to_lidar", "Retrieval top-1 RGB→LiDAR", ".3f", "max", "top1_r2l"),
        Metric("val_top1_lidar_to_rgb", "Retrieval top-1 LiDAR→RGB", ".3f", "max", "top1_l2r"),
        Metric("logit_scale", "Logit Scale", ".3g", column="scale"),
    ),
)
PROJECTOR = Stage(
    ProjectorConfig,
    (
        Metric("val_loss", "Projector Validation MSE", ".4g", "min", column="val_mse"),
        Metric("val_cosine", "Projector Mean Cosine", ".4f", "max", column="val_cos"),
    ),
    upstream=CONTRASTIVE,
)
CLASSIFIER = Stage(
    ClassifierConfig,
    (
        Metric("val_loss", "Classifier Validation Loss", ".4g", "min", column="val_loss"),
        *(EPOCH_METRICS[k] for k in AT_BEST_EPOCH),
    ),
    upstream=PROJECTOR,
)
STAGES: tuple[Stage, ...] = (CONTRASTIVE, PROJECTOR, CLASSIFIER)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    """The stage called `name`; UserError naming the stages otherwise."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise UserError(f"stage: expected one of {', '.join(STAGE_NAMES)}, got {name!r}")
