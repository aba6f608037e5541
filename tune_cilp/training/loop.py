"""The one training loop of every trainer here (the fusion Trainer, the CILP stage trainers):
one epoch at a time, with complete resumable state.

The protocol is the seed notebook's (docs/PROTOCOL.md, section 2): Adam, cosine annealing to
eta_min over the epochs, best-by-validation-loss weights kept. What differs from it is speed and
bookkeeping:

- the whole dataset is moved to the device once as tensors (rgb stays uint8 there and becomes
  float / 255 per batch), batches are drawn by index from a seeded permutation;
- evaluation runs under torch.inference_mode in batches of EVAL_BATCH (per device type);
- optional bf16 autocast and channels_last (see tune_cilp.training.device).

A subclass says what differs: build() (the module to train, an nn.Module or nn.ModuleDict),
train_epoch(), evaluate(), num_epochs, and optionally frozen_parts(), phase_parts(), keeps_best()
and num_parameters. Frozen parts get requires_grad=False on every parameter, are left out of the
optimiser and are checked bit-identical after every epoch (a trainer that changed them would be
a bug: RuntimeError). A run in phases (phase_parts: which parts an epoch trains) starts each
phase with a new Adam over that phase's parts and a cosine schedule over its epochs; the parts
it does not train are out of its optimiser and checked bit-identical after each of its epochs.

Process-wide settings (threads, flush-to-zero, the GPU memory cap) are not the loop's: the caller
makes them once with configure_process(). On CPU the same seed gives the same metrics (timings
aside), and a run restored from state_dict() after epoch k continues bit-for-bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import classification_metrics
from tune_cilp.core.predictions import HeldOut, Predictions, Scores
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.training.device import (
    eval_batch_size,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)


class LoopConfig(Protocol):
    """What the loop reads from a trainer's config (TrainConfig and the CILP stage configs)."""

    batch_size: int
    lr: float
    eta_min: float
    weight_decay: float
    seed: int
    precision: str
    channels_last: bool | None

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Any: ...


def scene_scores(logits: torch.Tensor) -> np.ndarray:
    """Probability of spheres per scene, float64 (see tune_cilp.core.predictions.Scores)."""
    return torch.sigmoid(logits.detach().double()).cpu().numpy()


def validation_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Every classification metric of tune_cilp.core.metrics (spheres positive), in its
    registry's order: the validation loss from the logits (plain BCE, no pos_weight, so runs
    compare), the rest from the scores (at the threshold: logit >= 0)."""
    loss = F.binary_cross_entropy_with_logits(logits, labels).item()
    predicted = (logits >= 0).cpu().numpy()  # sigmoid >= 0.5
    actual = labels.cpu().numpy() >= 0.5
    return classification_metrics(scene_scores(logits), actual, predicted, val_loss=loss)


class DeviceSplit:
    """One split resident on the device: rgb uint8, xyza float32, labels float32."""

    def __init__(self, arrays: CilpArrays, device: torch.device):
        self.rgb = torch.from_numpy(np.ascontiguousarray(arrays.rgb)).to(device)
        self.xyza = torch.from_numpy(np.ascontiguousarray(arrays.xyza)).to(device)
        self.labels = torch.from_numpy(arrays.labels.astype(np.float32)).to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(
        self, index: torch.Tensor | slice, memory_format: torch.memory_format
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """rgb as float in [0, 1], xyza and labels of the scenes at ``index``."""
        rgb = self.rgb[index].float().div_(255).contiguous(memory_format=memory_format)
        xyza = self.xyza[index].contiguous(memory_format=memory_format)
        return rgb, xyza, self.labels[index]


def device_splits(data: CilpArrays, device: torch.device) -> tuple[DeviceSplit, DeviceSplit]:
    """The train and validation splits resident on `device`; UserError if one is empty."""
    n_train, n_val = int(data.is_train.sum()), int((~data.is_train).sum())
    if n_train == 0 or n_val == 0:
        raise UserError(f"data: need train and validation scenes, got {n_train} and {n_val}")
    return DeviceSplit(data.train, device), DeviceSplit(data.validation, device)


class TrainingLoop:
    """Trains build()'s module on ``data`` (its is_train / validation split), one epoch per
    run_epoch() (see the module docstring for what a subclass defines).

    test: a mask of validation scenes held out as a test split (tune_cilp.data.held_out_mask),
    None for none. They leave the validation split (so nothing is chosen on them) and a
    classifier scores them at each new best epoch, for its record only (predictions()).

    Attributes the caller records: device, precision ("fp32" | "bf16"), channels_last,
    num_parameters. Touches no process-wide state (see configure_process).
    """

    def __init__(
        self,
        cfg: LoopConfig,
        data: CilpArrays,
        *,
        device: str | torch.device | None = None,
        test: np.ndarray | None = None,
    ):
        self.cfg = cfg
        self.device = resolve_device(device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.channels_last = resolve_channels_last(cfg.channels_last, self.device)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.eval_batch = eval_batch_size(self.device)
        if test is not None and (test & data.is_train).any():
            raise ValueError("the test split must be drawn from the validation scenes")
        kept = data if test is None else data.subset(~test)  # the training split as it was
        self.train_data, self.val_data = device_splits(kept, self.device)
        validation = kept.validation
        self.val_ids, self.val_labels = validation.ids, validation.labels
        held_out = None if test is None else data.subset(test)
        self.test_data = None if held_out is None else DeviceSplit(held_out, self.device)
        self.test_ids = None if held_out is None else held_out.ids
        self.test_labels = None if held_out is None else held_out.labels

        self.module = self._new_module()
        for name in self.frozen_parts():
            self.module[name].requires_grad_(False)
        self._frozen = {k: v.clone() for k, v in self._frozen_state(self.frozen_parts())}
        self._start_phase(0)
        # The batch order has a generator of its own, so nothing else that draws random numbers
        # shifts it; training draws from nothing else.
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0
        self.best_val_loss = math.inf
        self.best_epoch = 0
        self._best_state = _copy_state(self.module.state_dict())
        self.history: list[dict[str, float | int]] = []
        # Per-scene validation scores (classifiers only, via classify()): this epoch's, the
        # last epoch's and the best epoch's; predictions() turns them into the trial's record.
        # The test split's likewise, this epoch's and the best epoch's (never reported).
        self._epoch_scores: np.ndarray | None = None
        self._last_scores: Scores | None = None
        self._best_scores: Scores | None = None
        self._epoch_test_scores: np.ndarray | None = None
        self._best_test_scores: Scores | None = None

    # What a trainer defines -------------------------------------------------------------------
    def build(self) -> nn.Module:
        """The module to train, newly built, on the CPU and in the memory format its weights
        should have (its random initial weights drawn from torch's global generator, which the
        loop seeds; the loop moves it to the device)."""
        raise NotImplementedError

    def train_epoch(self) -> float:
        """One pass over the training split (module in train mode); the mean training loss."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Validation metrics, ``val_loss`` among them (eval mode, under inference_mode)."""
        raise NotImplementedError

    @property
    def num_epochs(self) -> int:
        """How many epochs the run trains."""
        raise NotImplementedError

    def frozen_parts(self) -> tuple[str, ...]:
        """Names of the parts (of an nn.ModuleDict module) never trained here."""
        return ()

    def phase_parts(self, epoch: int) -> tuple[str, ...] | None:
        """The parts epoch `epoch` (0-based) trains; None (the default): every part not frozen,
        the whole run one phase."""
        return None

    def keeps_best(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) may be the one whose weights are kept as the best."""
        return True

    @property
    def num_parameters(self) -> int:
        """Parameters of what this trainer produces (reported as num_parameters)."""
        return sum(p.numel() for p in self.module.parameters())

    # Shared machinery -------------------------------------------------------------------------
    def _new_module(self) -> nn.Module:
        # The initial weights come from the seed alone, and the global generator is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            module = self.build()
        return module.to(self.device)

    def autocast(self) -> torch.autocast:
        """bf16 autocast when the precision is bf16 (a no-op context otherwise)."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def batches(self, n: int, weights: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Index batches of batch_size from a seeded random permutation of range(n); with
        `weights` (one per item, on the CPU), n items drawn with replacement in proportion to
        them instead (class-balanced sampling; the same generator, so a resume continues it)."""
        if weights is None:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.multinomial(weights, n, replacement=True, generator=self.generator)
        order = order.to(self.device)
        for start in range(0, n, self.cfg.batch_size):
            yield order[start : start + self.cfg.batch_size]

    def step(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def eval_chunks(self, n: int) -> Iterator[slice]:
        """range(n) in evaluation batches, in order."""
        for start in range(0, n, self.eval_batch):
            yield slice(start, start + self.eval_batch)

    def classify(
        self, logits: torch.Tensor, test_logits: torch.Tensor | None = None
    ) -> dict[str, float]:
        """validation_metrics of a classifier's logits for the whole validation split, in its
        order; keeps the scores for this epoch's predictions (call it from evaluate()).
        test_logits: the test split's (in its order) where there is one; they go into the
        record only, no metric of theirs into the epoch's."""
        if (test_logits is None) != (self.test_data is None):
            raise RuntimeError(
                f"{type(self).__name__}: test_logits are due exactly when there is a test split"
            )
        self._epoch_scores = scene_scores(logits)
        self._epoch_test_scores = None if test_logits is None else scene_scores(test_logits)
        return validation_metrics(logits, self.val_data.labels)

    def predictions(self) -> Predictions | None:
        """The trial's per-scene record (best and last epoch, and the test split at the best
        epoch), None if no epoch classified."""
        if self._last_scores is None:
            return None
        return Predictions(
            self.val_ids, self.val_labels, self._best_scores, self._last_scores, self._held_out()
        )

    def _held_out(self) -> HeldOut | None:
        scores = self._best_test_scores
        if scores is None or self.test_ids is None or self.test_labels is None:
            return None
        return HeldOut(scores.epoch, self.test_ids, self.test_labels, scores.proba)

    @torch.no_grad()
    def map_split(
        self, split: DeviceSplit, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """fn(rgb, xyza) over a whole split in evaluation batches, under autocast, as float32
        (no_grad: also for features computed once, outside evaluate)."""
        out = []
        for index in self.eval_chunks(len(split)):
            rgb, xyza, _ = split.batch(index, self.memory_format)
            with self.autocast():
                out.append(fn(rgb, xyza).float())
        return torch.cat(out)

    def _start_phase(self, epoch: int) -> None:
        """The optimiser and schedule of the phase epoch `epoch` is in, over the parts it trains."""
        parts = self.phase_parts(epoch)
        frozen = self.frozen_parts()
        if parts is not None:
            for name in self.module:
                if name not in frozen:
                    self.module[name].requires_grad_(name in parts)
            for name in frozen:  # a part may share modules with a frozen one
                self.module[name].requires_grad_(False)
        first = last = epoch
        while first > 0 and self.phase_parts(first - 1) == parts:
            first -= 1
        while last + 1 < self.num_epochs and self.phase_parts(last + 1) == parts:
            last += 1
        self._phase = parts
        self._resting = () if parts is None else tuple(n for n in self.module if n not in parts)
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        cfg = self.cfg
        self.optimizer = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=last - first + 1, eta_min=cfg.eta_min
        )

    def _frozen_state(self, parts: tuple[str, ...]) -> Iterator[tuple[str, torch.Tensor]]:
        for name in parts:
            for key, value in self.module[name].state_dict().items():
                yield f"{name}.{key}", value

    def check_frozen(self, before: Mapping[str, torch.Tensor] | None = None) -> None:
        """RuntimeError unless every frozen part is bit-identical to what the run began with
        (and, given `before`, every part the phase rests is as it was then)."""
        state = [*self._frozen_state(self.frozen_parts())]
        reference = dict(self._frozen)
        if before is not None:
            state += [*self._frozen_state(self._resting)]
            reference.update(before)
        changed = sorted({k for k, v in state if not torch.equal(v, reference[k])})
        if changed:
            raise RuntimeError(f"{type(self).__name__}: frozen weights changed: {changed[:3]}")

    @property
    def done(self) -> bool:
        """Whether the configured number of epochs has been trained."""
        return self.epoch >= self.num_epochs

    def epochs(self) -> Iterator[dict[str, float | int]]:
        """The epoch loop: each epoch still to train (a restored loop goes on after its last),
        run; its metrics."""
        while not self.done:
            yield self.run_epoch()

    def run_epoch(self) -> dict[str, float | int]:
        """Train one epoch, evaluate, keep the best weights; returns that epoch's metrics."""
        if self.done:
            raise RuntimeError(f"training already finished ({self.num_epochs} epochs)")
        start = time.perf_counter()
        if self.phase_parts(self.epoch) != self._phase:
            self._start_phase(self.epoch)
        resting = {k: v.clone() for k, v in self._frozen_state(self._resting)}
        lr = self.optimizer.param_groups[0]["lr"]
        self.module.train()
        train_loss = self.train_epoch()
        self.module.eval()
        with torch.inference_mode():
            val = self.evaluate()
        self.scheduler.step()
        self.check_frozen(resting)
        samples = len(self.train_data) + len(self.val_data)
        if self.test_data is not None:
            samples += len(self.test_data)
        return self.end_epoch(train_loss, val, lr, time.perf_counter() - start, samples)

    def end_epoch(
        self, train_loss: float, val: dict[str, float], lr: float, elapsed: float, samples: int
    ) -> dict[str, float | int]:
        """Count the epoch, keep the best weights by val_loss, and return (and record) the
        epoch's metrics in the schema's order (tune_cilp.core.metrics.EPOCH)."""
        eligible = self.keeps_best(self.epoch)
        self.epoch += 1
        scores, self._epoch_scores = self._epoch_scores, None
        test_scores, self._epoch_test_scores = self._epoch_test_scores, None
        test = None if test_scores is None else Scores(self.epoch, test_scores)
        if scores is not None:
            self._last_scores = Scores(self.epoch, scores)
        if eligible and val["val_loss"] < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val["val_loss"], self.epoch
            self._best_state = _copy_state(self.module.state_dict())
            self._best_scores = None if scores is None else self._last_scores
            self._best_test_scores = test  # scored by the epoch validation chose, no other
        metrics: dict[str, float | int] = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            **val,
            "lr": float(lr),
            "epoch_time_s": elapsed,
            "samples_per_s": samples / elapsed,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
        }
        self.history.append(metrics)
        return dict(metrics)

    def best_module(self) -> nn.Module:
        """A fresh module (eval mode, on the trainer's device) holding the best weights so far."""
        module = self._new_module()
        module.load_state_dict(self._best_state)
        return module.eval()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (tensors are live: save before
        training on). Loads with torch.load(weights_only=True)."""
        return {
            "config": self.cfg.to_dict(),
            "model": self.module.state_dict(),
            "best_model": self._best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            # Training draws random numbers from the batch-order generator only.
            "rng": {"batch_order": self.generator.get_state()},
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "history": [dict(h) for h in self.history],
            "scores": {name: _scores_state(s) for name, s in self._named_scores()},
        }

    def _named_scores(self) -> tuple[tuple[str, Scores | None], ...]:
        return (
            ("best", self._best_scores),
            ("last", self._last_scores),
            ("test", self._best_test_scores),
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a state_dict() of a run with the same config (a config saved before an
        option existed counts as that option's default)."""
        saved = state.get("config")
        if not self._same_config(saved):
            raise UserError(
                f"checkpoint config {saved!r} differs from this run's {self.cfg.to_dict()!r}"
            )
        try:
            self.module.load_state_dict(state["model"])
            self._best_state = _copy_state(state["best_model"])
            self._start_phase(max(int(state["epoch"]) - 1, 0))  # the phase the state was saved in
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["rng"]["batch_order"])
            self.epoch = int(state["epoch"])
            self.best_val_loss = float(state["best_val_loss"])
            self.best_epoch = int(state["best_epoch"])
            self.history = [dict(h) for h in state["history"]]
            # A checkpoint from before per-scene scores were kept has none: they start anew.
            saved_scores = state.get("scores", {})
            self._best_scores = _scores_from_state(saved_scores.get("best"))
            self._last_scores = _scores_from_state(saved_scores.get("last"))
            self._best_test_scores = _scores_from_state(saved_scores.get("test"))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserError(f"checkpoint state is incomplete or mismatched: {exc}") from None

    def _same_config(self, saved: object) -> bool:
        # Read back through the config class, so that a key missing from an older checkpoint
        # takes its default (as it does when Tune restores the trial's config).
        if not isinstance(saved, Mapping):
            return False
        try:
            return type(self.cfg).from_dict(saved) == self.cfg
        except UserError:
            return False


def _copy_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _scores_state(scores: Scores | None) -> dict[str, Any] | None:
    if scores is None:
        return None
    return {"epoch": scores.epoch, "proba": torch.from_numpy(scores.proba.copy())}


def _scores_from_state(state: Mapping[str, Any] | None) -> Scores | None:
    if state is None:
        return None
    return Scores(int(state["epoch"]), state["proba"].numpy().astype(np.float64))
