"""What the three CILP stages share: one epoch at a time, complete resumable state, frozen
parts that really stay frozen.

A stage builds its parts (an nn.ModuleDict), names the ones it must not train, and implements
train_epoch() and evaluate(). Frozen parts get requires_grad=False on every parameter, are left
out of the optimiser and are checked bit-identical after every epoch (a stage that changed them
would be a bug: RuntimeError). Like the fusion Trainer: initial weights from the seed alone,
batch order from a seeded generator of its own, best weights by validation loss, and a run
restored from state_dict() after epoch k continues bit-for-bit (on CPU).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tune_cilp.core.checkpoint import load_checkpoint
from tune_cilp.core.errors import UserError
from tune_cilp.data import CilpArrays
from tune_cilp.training.fusion import (
    ResumableLoop,
    device_splits,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)
from tune_cilp.training.stage_config import StageConfig


def load_stage_checkpoint(path: str, stage: str) -> dict[str, Any]:
    """The state saved by a ``stage`` trial at ``path``; UserError when the file is missing,
    not a checkpoint, carries pickled code, or comes from another stage."""
    state = load_checkpoint(path)
    found = state.get("config", {}).get("stage") if isinstance(state.get("config"), dict) else None
    if found != stage:
        what = f"a {found} checkpoint" if found else "not a CILP stage checkpoint"
        raise UserError(f"{path}: {what}, not a {stage} one")
    if "best_model" not in state:
        raise UserError(f"{path}: {stage} checkpoint without its best weights")
    return state


class StageTrainer(ResumableLoop):
    """Base of the stage trainers (see the module docstring)."""

    def __init__(
        self, cfg: StageConfig, data: CilpArrays, *, device: str | torch.device | None = None
    ):
        self.cfg = cfg
        self.device = resolve_device(device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.memory_format = (
            torch.channels_last
            if resolve_channels_last(None, self.device)
            else torch.contiguous_format
        )
        self.train_data, self.val_data = device_splits(data, self.device)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.parts = self.build().to(self.device)
        for name in self.frozen_parts():
            self.parts[name].requires_grad_(False)
        self._frozen = {k: v.clone() for k, v in self._frozen_state()}
        trainable = [p for p in self.parts.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.total_epochs, eta_min=cfg.eta_min
        )
        self._start_loop(cfg.seed)

    # What a stage defines ---------------------------------------------------------------------
    def build(self) -> nn.ModuleDict:
        raise NotImplementedError

    def frozen_parts(self) -> tuple[str, ...]:
        """Parts never trained in this stage."""
        return ()

    def train_epoch(self) -> float:
        """One pass over the training split; the mean training loss."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Validation metrics, ``val_loss`` among them."""
        raise NotImplementedError

    @property
    def num_parameters(self) -> int:
        """Parameters of what this stage produces (reported as num_parameters)."""
        return sum(p.numel() for p in self.parts.parameters())

    # Shared machinery -------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def batches(self, n: int) -> Iterator[torch.Tensor]:
        """Index batches of a seeded random permutation of range(n)."""
        order = torch.randperm(n, generator=self.generator).to(self.device)
        for start in range(0, n, self.cfg.batch_size):
            yield order[start : start + self.cfg.batch_size]

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def _frozen_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.frozen_parts():
            for key, value in self.parts[name].state_dict().items():
                yield f"{name}.{key}", value

    def check_frozen(self) -> None:
        """RuntimeError unless every frozen part is bit-identical to what the stage began with."""
        changed = [k for k, v in self._frozen_state() if not torch.equal(v, self._frozen[k])]
        if changed:
            raise RuntimeError(f"{self.cfg.stage}: frozen weights changed: {changed[:3]}")

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.total_epochs

    def run_epoch(self) -> dict[str, float | int]:
        """Train one epoch, evaluate, keep the best weights; returns that epoch's metrics."""
        if self.done:
            raise RuntimeError(f"training already finished ({self.cfg.total_epochs} epochs)")
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        self.parts.train()
        train_loss = self.train_epoch()
        self.parts.eval()
        with torch.inference_mode():
            val = self.evaluate()
        self.scheduler.step()
        self.check_frozen()
        samples = len(self.train_data) + len(self.val_data)
        return self._end_epoch(train_loss, val, lr, time.perf_counter() - start, samples)

    def best_parts(self) -> nn.ModuleDict:
        """A fresh copy of the parts (eval mode, on the trainer's device) with the best weights."""
        with torch.random.fork_rng(devices=[]):
            parts = self.build().to(self.device)
        parts.load_state_dict(self._best_state)
        return parts.eval()

    def trained_module(self) -> nn.Module:
        return self.parts
