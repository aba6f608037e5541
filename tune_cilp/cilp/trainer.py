"""What the three CILP stages share: one epoch at a time, complete resumable state, frozen
parts that really stay frozen.

A stage builds its parts (an nn.ModuleDict), names the ones it must not train, and implements
train_epoch() and evaluate(). Frozen parts get requires_grad=False on every parameter, are left
out of the optimiser and are checked bit-identical after every epoch (a stage that changed them
would be a bug: RuntimeError). Like tune_cilp.train.Trainer: initial weights from the seed alone,
batch order from a seeded generator of its own, best weights by validation loss, and a run
restored from state_dict() after epoch k continues bit-for-bit (on CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from tune_cilp.checkpoint import load_checkpoint
from tune_cilp.cilp.config import StageConfig
from tune_cilp.data import CilpArrays
from tune_cilp.errors import UserError
from tune_cilp.train import (
    _copy_state,
    _DeviceSplit,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)


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


class StageTrainer:
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
        n_train, n_val = int(data.is_train.sum()), int((~data.is_train).sum())
        if n_train == 0 or n_val == 0:
            raise UserError(f"data: need train and validation scenes, got {n_train} and {n_val}")
        self.train_data = _DeviceSplit(data.train, self.device)
        self.val_data = _DeviceSplit(data.validation, self.device)

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
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0
        self.best_val_loss = math.inf
        self.best_epoch = 0
        self._best_state = _copy_state(self.parts.state_dict())
        self.history: list[dict[str, float | int]] = []

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
        elapsed = time.perf_counter() - start
        self.epoch += 1
        if val["val_loss"] < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val["val_loss"], self.epoch
            self._best_state = _copy_state(self.parts.state_dict())
        metrics: dict[str, float | int] = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            **val,
            "lr": float(lr),
            "epoch_time_s": elapsed,
            "samples_per_s": (len(self.train_data) + len(self.val_data)) / elapsed,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
        }
        self.history.append(metrics)
        return dict(metrics)

    def best_parts(self) -> nn.ModuleDict:
        """A fresh copy of the parts (eval mode, on the trainer's device) with the best weights."""
        with torch.random.fork_rng(devices=[]):
            parts = self.build().to(self.device)
        parts.load_state_dict(self._best_state)
        return parts.eval()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; loads with torch.load(weights_only=True)."""
        return {
            "config": self.cfg.to_dict(),
            "model": self.parts.state_dict(),
            "best_model": self._best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"batch_order": self.generator.get_state()},
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a state_dict() of a run with the same config."""
        if state.get("config") != self.cfg.to_dict():
            raise UserError(
                f"checkpoint config {state.get('config')!r} differs from this run's "
                f"{self.cfg.to_dict()!r}"
            )
        try:
            self.parts.load_state_dict(state["model"])
            self._best_state = _copy_state(state["best_model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["rng"]["batch_order"])
            self.epoch = int(state["epoch"])
            self.best_val_loss = float(state["best_val_loss"])
            self.best_epoch = int(state["best_epoch"])
            self.history = [dict(h) for h in state["history"]]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserError(f"checkpoint state is incomplete or mismatched: {exc}") from None
