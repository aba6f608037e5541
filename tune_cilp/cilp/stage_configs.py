"""The stages' trial configs: the seed's protocol as defaults, checked on construction.

A trial config is one of these as a plain dict (``stage`` says which: the class's ``stage``
name); ``from_dict`` (and tune_cilp.cilp.stages.stage_config, which picks the class by that name)
turns it back, refusing unknown keys and bad values with one line (UserError).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from tune_cilp.cilp.cilp_model import LIDAR_INPUTS
from tune_cilp.cilp.losses import CLIP_INIT, CLIP_MAX_SCALE, SIMILARITIES
from tune_cilp.core.errors import UserError
from tune_cilp.data.constants import DEFAULT_SEED
from tune_cilp.fusion.variants import DOWNSAMPLES
from tune_cilp.training.trial_config import (
    MAX_EPOCHS,
    check_class_balance,
    check_protocol,
    config_from_dict,
    is_int,
    is_real,
)

CLASSIFIER_MODES: tuple[str, ...] = ("seed", "nvidia")


@dataclass(frozen=True)
class StageConfig:
    """What every stage shares: the seed notebook's protocol (docs/CILP.md)."""

    stage: ClassVar[str] = ""
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    eta_min: float = 1e-6
    weight_decay: float = 0.0
    seed: int = DEFAULT_SEED
    precision: str = "auto"
    # None = where faster (as TrainConfig.channels_last); configs saved before it existed lack it.
    channels_last: bool | None = None

    def _bad(self, name: str, rule: str) -> UserError:
        return UserError(f"{self.stage} {name}: expected {rule}, got {getattr(self, name)!r}")

    def __post_init__(self) -> None:
        check_protocol(self, self._bad)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> StageConfig:
        """The validated config of a trial config dict of this class's stage (UserError for
        another stage, an unknown key or a bad value); its float fields given as ints (a Tune
        value such as lr=1) are made floats."""
        if mapping.get("stage") != cls.stage:
            raise UserError(f"stage: expected {cls.stage}, got {mapping.get('stage')!r}")
        floats = [f.name for f in fields(cls) if f.type in ("float", float)]
        return config_from_dict(cls, mapping, floats, cls.stage, skip="stage")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict with its ``stage`` (JSON- and weights_only-safe)."""
        return {"stage": self.stage, **asdict(self)}

    @property
    def total_epochs(self) -> int:
        return self.epochs


@dataclass(frozen=True)
class ContrastiveConfig(StageConfig):
    """Both embedders trained to pair each scene's image with its LiDAR scan."""

    stage: ClassVar[str] = "contrastive"
    downsample: str = "maxpool"
    emb_dim: int = 200
    lidar_input: str = "xyza"
    similarity: str = "clip"
    logit_scale_init: float = CLIP_INIT

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.downsample not in DOWNSAMPLES:
            raise self._bad("downsample", f"one of {', '.join(DOWNSAMPLES)}")
        if not is_int(self.emb_dim) or self.emb_dim < 2:
            raise self._bad("emb_dim", "an integer >= 2")
        if self.lidar_input not in LIDAR_INPUTS:
            raise self._bad("lidar_input", f"one of {', '.join(LIDAR_INPUTS)}")
        if self.similarity not in SIMILARITIES:
            raise self._bad("similarity", f"one of {', '.join(SIMILARITIES)}")
        limit = math.log(CLIP_MAX_SCALE)
        if not is_real(self.logit_scale_init) or not 0 <= self.logit_scale_init <= limit:
            raise self._bad("logit_scale_init", f"a number in [0, log 100 = {limit:.4f}]")


@dataclass(frozen=True)
class ProjectorConfig(StageConfig):
    """Image embedding -> LiDAR embedding (or NVIDIA's LiDAR CNN's 3,200-d embedding), MSE."""

    stage: ClassVar[str] = "projector"
    contrastive_checkpoint: str = ""
    lidar_cnn: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.contrastive_checkpoint, str) or not self.contrastive_checkpoint:
            raise self._bad("contrastive_checkpoint", "the path of a contrastive checkpoint")
        if self.lidar_cnn is not None and not isinstance(self.lidar_cnn, str):
            raise self._bad("lidar_cnn", "null or the path of NVIDIA's LiDAR CNN state dict")


@dataclass(frozen=True)
class ClassifierConfig(StageConfig):
    """RGB-only classifier: image embedder -> projector -> head.

    mode "seed": a new head trained on projected image embeddings. mode "nvidia": a LiDAR head,
    used frozen on the projected image embeddings: NVIDIA's LiDAR CNN's head when the projector
    maps into its space, else one trained here on the LiDAR embeddings (every epoch, or with
    finetune the first head_epochs epochs). finetune: train the image embedder and projector
    (frozen otherwise). A trial runs head_epochs + epochs epochs; each epoch trains something
    (see phases()). class_balance: as the fusion TrainConfig's (tune_cilp.training.balance),
    in every epoch's loss.
    """

    stage: ClassVar[str] = "classifier"
    projector_checkpoint: str = ""
    mode: str = "seed"
    finetune: bool = False
    head_epochs: int = 0
    class_balance: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.projector_checkpoint, str) or not self.projector_checkpoint:
            raise self._bad("projector_checkpoint", "the path of a projector checkpoint")
        if self.mode not in CLASSIFIER_MODES:
            raise self._bad("mode", f"one of {', '.join(CLASSIFIER_MODES)}")
        if self.finetune not in (True, False):
            raise self._bad("finetune", "true or false")
        check_class_balance(self, self._bad)
        if not is_int(self.head_epochs) or not 0 <= self.head_epochs <= MAX_EPOCHS:
            raise self._bad("head_epochs", "an integer >= 0")
        if self.mode == "seed" and self.head_epochs:
            raise self._bad("head_epochs", "0 in mode seed (its head trains on RGB)")
        if self.mode == "nvidia" and not self.finetune and self.head_epochs:
            raise self._bad(
                "head_epochs",
                "0 in mode nvidia without finetune (every epoch trains "
                "the head on LiDAR embeddings)",
            )

    @property
    def total_epochs(self) -> int:
        return self.head_epochs + self.epochs

    def phases(self, has_lidar_cnn: bool) -> list[str]:
        """What each epoch trains: "lidar" (the head, on LiDAR embeddings) or "rgb" (the RGB
        path: the head in mode seed, the embedder and projector with finetune). UserError for a
        plan in which an epoch would train nothing."""
        if self.mode == "seed":
            return ["rgb"] * self.epochs
        if has_lidar_cnn:
            if not self.finetune or self.head_epochs:
                raise UserError(
                    "classifier: with NVIDIA's LiDAR CNN the head comes trained and stays frozen, "
                    "so mode nvidia needs finetune=true and head_epochs=0"
                )
            return ["rgb"] * self.epochs
        if not self.finetune:
            return ["lidar"] * self.epochs
        if not self.head_epochs:
            raise UserError(
                "classifier: mode nvidia with finetune and no LiDAR CNN needs head_epochs >= 1 "
                "(the LiDAR head must be trained before it is used frozen)"
            )
        return ["lidar"] * self.head_epochs + ["rgb"] * self.epochs


def checkpoint_key(stage: str) -> str:
    """The config key by which a downstream stage names its `stage` trial's checkpoint."""
    return f"{stage}_checkpoint"
