"""The CILP stages, in chain order: one `Stage` record per stage, and everything the chain, the
selection, the trainer lookup, the status table and the CILP table know about a stage comes from
it (docs/CILP.md, "Adding a stage").

A stage's name and trial config are its config class's (tune_cilp/cilp/stage_configs.py); its
trainer is named "module:Class" and imported only where a trial runs (the trainers need torch's
training code; the analysis reads this registry without them). Everything here reads STAGES when
it is called, never a copy taken at import: a stage added to STAGES is in all of it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tune_cilp.cilp.probes import PROBE_SCORES, probe_key
from tune_cilp.cilp.stage_configs import (
    ClassifierConfig,
    ContrastiveConfig,
    ProjectorConfig,
    StageConfig,
    checkpoint_key,
)
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import (
    AT_BEST_EPOCH,
    EPOCH_METRICS,
    TRIAL_METRICS,
    Metric,
    status_columns,
)

BASELINES = "baselines"  # the reference models' experiment, beside the stages

# What every stage reports each epoch besides its own validation numbers (shared with fusion).
_COMMON = tuple(
    EPOCH_METRICS[k] for k in ("epoch", "train_loss", "lr", "epoch_time_s", "samples_per_s")
)
_BEST = tuple(EPOCH_METRICS[k] for k in ("best_val_loss", "best_epoch"))
# The CILP table's last row: the whole chain's, every stage's epochs summed.
TRAINING_TIME = TRIAL_METRICS["training_time_s"]


@dataclass(frozen=True)
class Row:
    """A row a stage gives the CILP table: `metric` as the table shows it, its value the
    stage's `source` result in the row of the epoch whose weights it kept, over `divisor`."""

    metric: Metric
    source: str
    divisor: float = 1.0

    def value(self, kept: Mapping[str, Any]) -> Any:
        value = kept.get(self.source, math.nan)
        return value if self.divisor == 1 else value / self.divisor


def shown_as(metric: Metric, key: str) -> Row:
    """A row showing one of a stage's validation metrics under the table key `key`."""
    return Row(replace(metric, key=key, column=""), metric.key)


@dataclass(frozen=True)
class Probe:
    """A linear probe made after a stage on its kept weights (tune_cilp/cilp/probes.py): what
    it probes (the trainer's probes() reports probe_<what>_<score> on its last row) and how the
    table names that representation."""

    what: str
    label: str

    @property
    def rows(self) -> tuple[Metric, ...]:
        return tuple(
            Metric(probe_key(self.what, score), f"Linear probe, {self.label}: {label}", spec, "max")
            for score, (label, spec) in PROBE_SCORES.items()
        )


@dataclass(frozen=True)
class Stage:
    """One stage of the chain.

    config:     its trial config class (its ``stage`` ClassVar is the stage's name).
    trainer:    "module:Class" of its StageTrainer (tune_cilp/cilp/stage_trainers.py).
    validation: what it reports each epoch besides the loop's common metrics.
    upstream:   the stage whose best trial it continues from (its config names that trial's
                checkpoint under checkpoint_key(upstream's name)); None for the first.
    rows:       its rows in the CILP table (analysis/cilp_table.py).
    probes:     the linear probes made after it, on its kept weights (rows of the table too).
    curves:     the validation curves of its plot (keys of its epoch metrics).
    classifies: its trials are the chain's RGB-only classifiers: they report the classification
                metrics and per-scene validation scores of a fusion trial (and the majority-class
                rate), and the CILP table reads them as the fusion table does (intervals over
                scenes, paired tests, the verdict). One stage of the chain at most.
    """

    config: type[StageConfig]
    trainer: str
    validation: tuple[Metric, ...]
    upstream: Stage | None = None
    rows: tuple[Row, ...] = ()
    probes: tuple[Probe, ...] = ()
    curves: tuple[str, ...] = ("val_loss",)
    classifies: bool = False

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

    @property
    def probe_rows(self) -> tuple[Metric, ...]:
        return tuple(m for probe in self.probes for m in probe.rows)

    def trainer_class(self) -> type:
        """The trainer class (imports its module: torch)."""
        module, _, name = self.trainer.partition(":")
        return getattr(importlib.import_module(module), name)


_CONTRASTIVE_LOSS = Metric(
    "val_loss", "Contrastive Validation Loss", ".4g", "min", column="val_loss"
)
_TOP1_R2L = Metric("val_top1_rgb_to_lidar", "Retrieval top-1 RGB→LiDAR", ".3f", "max", "top1_r2l")
_TOP1_L2R = Metric("val_top1_lidar_to_rgb", "Retrieval top-1 LiDAR→RGB", ".3f", "max", "top1_l2r")
CONTRASTIVE = Stage(
    ContrastiveConfig,
    "tune_cilp.cilp.stage_trainers:ContrastiveTrainer",
    (
        _CONTRASTIVE_LOSS,
        _TOP1_R2L,
        _TOP1_L2R,
        Metric("logit_scale", "Logit Scale", ".3g", column="scale"),
    ),
    rows=(
        shown_as(_CONTRASTIVE_LOSS, "contrastive_val_loss"),
        shown_as(_TOP1_R2L, "top1_rgb_to_lidar"),
        shown_as(_TOP1_L2R, "top1_lidar_to_rgb"),
    ),
    probes=(Probe("rgb", "image emb."), Probe("lidar", "LiDAR emb.")),
    curves=("val_loss", "val_top1_rgb_to_lidar", "val_top1_lidar_to_rgb"),
)
_PROJECTOR_MSE = Metric("val_loss", "Projector Validation MSE", ".4g", "min", column="val_mse")
PROJECTOR = Stage(
    ProjectorConfig,
    "tune_cilp.cilp.stage_trainers:ProjectorTrainer",
    (
        _PROJECTOR_MSE,
        Metric("val_cosine", "Projector Mean Cosine", ".4f", "max", column="val_cos"),
    ),
    upstream=CONTRASTIVE,
    rows=(shown_as(_PROJECTOR_MSE, "projector_val_mse"),),
    probes=(Probe("projected", "projected image emb."),),
    curves=("val_loss", "val_cosine"),
)
_CLASSIFIER_LOSS = Metric("val_loss", "Classifier Validation Loss", ".4g", "min", column="val_loss")
CLASSIFIER = Stage(
    ClassifierConfig,
    "tune_cilp.cilp.stage_trainers:ClassifierTrainer",
    (_CLASSIFIER_LOSS, *(EPOCH_METRICS[k] for k in AT_BEST_EPOCH)),
    upstream=PROJECTOR,
    rows=(
        shown_as(_CLASSIFIER_LOSS, "classifier_val_loss"),
        *(Row(TRIAL_METRICS[k], k) for k in AT_BEST_EPOCH),
        # the RGB-only classifier's: image embedder, projector and head
        Row(TRIAL_METRICS["params_m"], "num_parameters", divisor=1e6),
    ),
    curves=("val_loss", "val_accuracy"),
    classifies=True,
)
STAGES: tuple[Stage, ...] = (CONTRASTIVE, PROJECTOR, CLASSIFIER)


def stage_names() -> tuple[str, ...]:
    """The stages' names, in chain order."""
    return tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    """The stage called `name`; UserError naming the stages otherwise."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise UserError(f"stage: expected one of {', '.join(stage_names())}, got {name!r}")


def classifier_stage() -> Stage | None:
    """The stage whose trials are the chain's classifiers (Stage.classifies), if any."""
    found = [s for s in STAGES if s.classifies]
    if len(found) > 1:
        raise ValueError(f"one classifier stage at most, got {', '.join(s.name for s in found)}")
    return found[0] if found else None


def stage_config(mapping: Mapping[str, Any]) -> StageConfig:
    """The validated config of a trial config dict (its ``stage`` key picks the stage)."""
    return get_stage(mapping.get("stage")).config.from_dict(mapping)  # type: ignore[arg-type]


def cilp_rows() -> tuple[Metric, ...]:
    """The CILP table's rows: one chain (one seed) reduced to numbers, each stage at the epoch
    whose weights it kept, the probes on those. The stages' rows in chain order, with every
    probe row together just before the classifier stage's (what is probed, then the classifier
    trained on it), then the chain's training time."""
    probes = tuple(m for s in STAGES for m in s.probe_rows)
    rows: list[Metric] = []
    for stage in STAGES:
        if stage.classifies:
            rows += probes
            probes = ()
        rows += [r.metric for r in stage.rows]
    return (*rows, *probes, TRAINING_TIME)
