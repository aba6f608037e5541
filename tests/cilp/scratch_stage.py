"""A scratch fourth CILP stage, as a developer would add one (tests/cilp/test_scratch_stage.py):
its config, its trainer and its Stage entry, and nothing else anywhere.

"scratch" calibrates the chain's RGB-only classifier: one learned temperature on its frozen
logits (temperature scaling), BCE. It continues from the classifier stage's best trial and
probes its calibrated logit after its last epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tune_cilp.cilp import stages
from tune_cilp.cilp.losses import LogitScale
from tune_cilp.cilp.stage_configs import StageConfig
from tune_cilp.cilp.stage_trainers import Downstream, rgb_classifier
from tune_cilp.cilp.stages import Probe, Stage, shown_as
from tune_cilp.core.metrics import Metric


@dataclass(frozen=True)
class ScratchConfig(StageConfig):
    stage: ClassVar[str] = "scratch"
    classifier_checkpoint: str = ""
    epochs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.classifier_checkpoint, str) or not self.classifier_checkpoint:
            raise self._bad("classifier_checkpoint", "the path of a classifier checkpoint")


class ScratchTrainer(Downstream):
    cfg: ScratchConfig

    def __init__(self, cfg: ScratchConfig, data, **kwargs):
        super().__init__(cfg, data, **kwargs)
        self.parts.eval()
        classifier = self.parts["classifier"]
        self.logits = {
            split: self.map_split(d, lambda rgb, xyza: classifier(rgb)[:, 0])
            for split, d in (("train", self.train_data), ("val", self.val_data))
        }

    def build(self) -> nn.ModuleDict:
        # log scale 0: the calibrated logit starts as the classifier's
        return nn.ModuleDict({"classifier": rgb_classifier(self.upstream), "scale": LogitScale(0)})

    def frozen_parts(self) -> tuple[str, ...]:
        return ("classifier",)

    def _calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.parts["scale"]()

    def train_epoch(self) -> float:
        labels = self.train_data.labels
        total = torch.zeros((), device=self.device)
        for index in self.batches(len(labels)):
            logits = self._calibrated(self.logits["train"][index])
            loss = F.binary_cross_entropy_with_logits(logits, labels[index])
            self.step(loss)
            total += loss.detach() * len(index)
        return total.item() / len(labels)

    def evaluate(self) -> dict[str, float]:
        logits = self._calibrated(self.logits["val"])
        loss = F.binary_cross_entropy_with_logits(logits, self.val_data.labels)
        return {"val_loss": loss.item(), "val_scale": self.parts["scale"]().item()}

    @torch.no_grad()
    def probes(self) -> dict[str, float]:
        scale = self.best_parts()["scale"]()
        return self._probe("calibrated", {s: (x * scale)[:, None] for s, x in self.logits.items()})


_LOSS = Metric("val_loss", "Scratch Validation Loss", ".4g", "min", column="val_loss")
_SCALE = Metric("val_scale", "Scratch Logit Scale", ".3g", column="scale")
SCRATCH = Stage(
    ScratchConfig,
    "scratch_stage:ScratchTrainer",
    (_LOSS, _SCALE),
    upstream=stages.CLASSIFIER,
    rows=(shown_as(_LOSS, "scratch_val_loss"), shown_as(_SCALE, "scratch_scale")),
    probes=(Probe("calibrated", "calibrated logit"),),
    curves=("val_loss", "val_scale"),
)


def register() -> None:
    """What the developer's one line in stages.py does (STAGES = (..., CLASSIFIER, SCRATCH))."""
    if SCRATCH not in stages.STAGES:
        stages.STAGES = (*stages.STAGES, SCRATCH)
