"""TrainConfig: one training run's protocol (the seed notebook's, docs/PROTOCOL.md section 2),
validated, with no torch import: the driver checks every configuration of a space before Ray
starts, and the trainer in tune_cilp.fusion.fusion_trainer runs it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tune_cilp.core.errors import UserError
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.data.constants import DEFAULT_SEED
from tune_cilp.data.split import check_test_fraction, held_out_mask
from tune_cilp.fusion.variants import DOWNSAMPLES, ModelConfig, list_variants
from tune_cilp.training.trial_config import (
    check_class_balance,
    check_protocol,
    config_from_dict,
    is_real,
)

FLOATS = ("lr", "eta_min", "weight_decay", "pos_weight")  # ints given for these become floats


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the seed notebook's protocol.

    precision: "auto" (default) = bf16 autocast where the hardware computes bf16 natively (CPUs
    with AVX512-BF16/AMX, CUDA GPUs with bf16 tensor cores), else fp32; "fp32" (the seed's) or
    "bf16" to force. auto is the default because the default experiment must be fast as well as
    faithful: on 2 Zen 4 cores bf16 trains ~1.9x faster, which takes the 50-epoch seed ablation
    under 10 minutes, and weights, optimiser and loss stay fp32 (autocast covers convolutions
    and matmuls only). Every trial records the precision it used (Trainer.precision).
    channels_last: None = where faster (measured: always, on CPU in fp32 and bf16; on CUDA the
    tensor cores want NHWC); True/False to force.
    pos_weight: weight of the positive class (spheres) in the training loss, given by hand;
    class_balance: one of CLASS_BALANCES ("pos_weight" computes that weight from the data, so
    the two cannot both be set).
    test_fraction: None (the seed's two-way split) or the share of the validation scenes held
    out as a test split (--test-fraction; held_out): validation then chooses the best epoch
    without them, and the trial records their scores at that epoch.
    """

    variant: str = "concat"
    downsample: str = "maxpool"
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    eta_min: float = 1e-6
    weight_decay: float = 0.0
    pos_weight: float | None = None
    class_balance: str = "none"
    seed: int = DEFAULT_SEED
    precision: str = "auto"
    channels_last: bool | None = None
    test_fraction: float | None = None

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> UserError:
            return UserError(f"{name}: expected {rule}, got {getattr(self, name)!r}")

        if self.variant not in list_variants():
            raise bad("variant", f"one of {', '.join(list_variants())}")
        if self.downsample not in DOWNSAMPLES:
            raise bad("downsample", f"one of {', '.join(DOWNSAMPLES)}")
        check_protocol(self, bad)
        if self.pos_weight is not None and (
            not is_real(self.pos_weight) or not 0 < self.pos_weight < math.inf
        ):
            raise bad("pos_weight", "null or a finite number > 0")
        check_class_balance(self, bad)
        if self.class_balance != "none" and self.pos_weight is not None:
            raise bad("pos_weight", f"null with class_balance {self.class_balance!r}")
        if self.test_fraction is not None:
            check_test_fraction(self.test_fraction, "test_fraction")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> TrainConfig:
        """A validated config from a plain mapping (e.g. a Ray Tune trial config).

        Unknown keys and bad values raise UserError; NumPy scalars become Python values.
        """
        return config_from_dict(cls, mapping, FLOATS, "training")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (JSON- and weights_only-safe). test_fraction only when
        set: a run without a test split has the very config it had before the option existed
        (its trials' configs, param space and checkpoints; from_dict reads it back as None)."""
        values = asdict(self)
        if values["test_fraction"] is None:
            del values["test_fraction"]
        return values

    def held_out(self, data: CilpArrays) -> np.ndarray | None:
        """The validation scenes of `data` this run holds out as its test split (a mask), None
        without a test fraction; the same for every trial of the data, whatever its seed."""
        if self.test_fraction is None:
            return None
        return held_out_mask(data.labels, data.is_train, self.test_fraction)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(variant=self.variant, downsample=self.downsample)
