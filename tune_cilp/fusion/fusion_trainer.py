"""The fusion Trainer: one fusion model (tune_cilp.fusion.fusion_model) trained by the shared loop
(tune_cilp.training.loop), and predict_proba for a trained model.

The protocol is the seed notebook's (docs/PROTOCOL.md, section 2): Adam lr 1e-3, cosine
annealing to 1e-6 over the epochs, batch 32, BCEWithLogits, 50 epochs, seed 51,
best-by-validation-loss weights kept, accuracy = sigmoid >= 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tune_cilp.core.errors import UserError
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_model import build_model
from tune_cilp.training.balance import class_balance
from tune_cilp.training.device import resolve_device
from tune_cilp.training.loop import DeviceSplit, TrainingLoop


class Trainer(TrainingLoop):
    """Trains one fusion model on ``data`` (its is_train / validation split, less the test
    scenes of cfg.test_fraction), one epoch per run_epoch(); see TrainingLoop for the
    attributes the caller records."""

    cfg: TrainConfig

    def __init__(
        self, cfg: TrainConfig, data: CilpArrays, *, device: str | torch.device | None = None
    ):
        super().__init__(cfg, data, device=device, test=cfg.held_out(data))
        self.balance = class_balance(cfg, data.train.labels, self.device)

    @property
    def model(self) -> nn.Module:
        """The model being trained."""
        return self.module

    @property
    def num_epochs(self) -> int:
        return self.cfg.epochs

    def build(self) -> nn.Module:
        # Weights in the inputs' memory format (the measured speed-up of channels_last is with
        # both). The CILP parts keep the default layout: converting theirs changes the bits of
        # the 1-channel depth convolutions, so it would be a change of results, not a refactor.
        return build_model(self.cfg.model_config).to(memory_format=self.memory_format)

    def train_epoch(self) -> float:
        data = self.train_data
        total = torch.zeros((), device=self.device)
        for index in self.batches(len(data), self.balance.sample_weights):
            rgb, xyza, labels = data.batch(index, self.memory_format)
            with self.autocast():
                logits = self.model(rgb, xyza)[:, 0]
            loss = F.binary_cross_entropy_with_logits(
                logits.float(), labels, pos_weight=self.balance.pos_weight
            )
            self.step(loss)
            total += loss.detach() * len(labels)  # stays on the device: no sync per batch
        return total.item() / len(data)

    def evaluate(self) -> dict[str, float]:
        def logits(split: DeviceSplit) -> torch.Tensor:
            return self.map_split(split, lambda rgb, xyza: self.model(rgb, xyza)[:, 0])

        test = None if self.test_data is None else logits(self.test_data)
        return self.classify(logits(self.val_data), test)

    def best_model(self) -> nn.Module:
        """A fresh model (eval mode, on the trainer's device) holding the best weights so far."""
        return self.best_module()


@torch.inference_mode()
def predict_proba(
    model: nn.Module,
    rgb_uint8: np.ndarray,
    xyza: np.ndarray,
    device: str | torch.device | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Probability of "spheres" for each scene: float32 (N,), in fp32, model in eval mode.

    rgb_uint8 is (N, 4, 64, 64) uint8 as in CilpArrays, xyza (N, 4, 64, 64) float32.
    """
    if rgb_uint8.dtype != np.uint8 or rgb_uint8.ndim != 4 or rgb_uint8.shape[1:] != (4, 64, 64):
        raise UserError(
            f"rgb: expected uint8 (N, 4, 64, 64), got {rgb_uint8.dtype} {rgb_uint8.shape}"
        )
    if xyza.shape != rgb_uint8.shape:
        raise UserError(f"xyza: expected shape {rgb_uint8.shape}, got {xyza.shape}")
    if device is not None:
        model = model.to(resolve_device(device))
    target = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(rgb_uint8), batch_size):
        rgb = torch.from_numpy(rgb_uint8[start : start + batch_size]).to(target).float() / 255
        xyz = torch.from_numpy(np.asarray(xyza[start : start + batch_size], np.float32)).to(target)
        out.append(torch.sigmoid(model(rgb, xyz)[:, 0].float()).cpu())
    if not out:
        return np.zeros(0, np.float32)
    return torch.cat(out).numpy()
