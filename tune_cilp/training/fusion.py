"""The training loop: one fusion model, one epoch at a time, with complete resumable state.

The protocol is the seed notebook's (docs/PROTOCOL.md, section 2): Adam lr 1e-3, cosine
annealing to 1e-6 over the epochs, batch 32, BCEWithLogits, 50 epochs, seed 51,
best-by-validation-loss weights kept, accuracy = sigmoid >= 0.5. What differs is speed and
bookkeeping:

- the whole dataset is moved to the device once as tensors (rgb stays uint8 there and becomes
  float / 255 per batch), batches are drawn by index from a seeded permutation;
- evaluation runs under torch.inference_mode in large batches;
- optional bf16 autocast and channels_last (see resolve_precision and resolve_channels_last).

Process-wide settings (threads, flush-to-zero, the GPU memory cap) are not the Trainer's: the
caller makes them once with configure_process(). On CPU the same seed gives the same metrics
(timings aside), and a run restored from state_dict() after epoch k continues bit-for-bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import binary_metrics
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.models.fusion import build_model
from tune_cilp.training.config import TrainConfig, is_int

# Evaluation batch per device type. On CPU, batches beyond ~32 fall out of cache: 256 was 3x
# slower per sample than 32 (2 Zen 4 cores, benchmarks/README.md); GPUs want big batches.
EVAL_BATCH = {"cpu": 32, "cuda": 1024}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"device: {exc}") from None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls/convs in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision, "fp32" or "bf16", that ``precision`` ("auto" or either) means here."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """channels_last where it is faster. Measured on 2 Zen 4 cores (benchmarks/README.md): a
    training step is ~2x faster in NHWC in fp32 and ~1.2x in bf16; CUDA tensor cores want NHWC
    too. So None means True on CPU and CUDA; other devices keep the default layout."""
    if channels_last is None:
        return device.type in ("cpu", "cuda")
    return channels_last


def _metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Validation loss (plain BCE, no pos_weight, so runs compare) and the classification
    metrics of tune_cilp.core.metrics (spheres positive)."""
    loss = F.binary_cross_entropy_with_logits(logits, labels).item()
    predicted = (logits >= 0).cpu().numpy()  # sigmoid >= 0.5
    return {"val_loss": loss, **binary_metrics(predicted, labels.cpu().numpy() >= 0.5)}


def configure_process(
    threads: int | None = None,
    device: str | torch.device | None = None,
    gpu_fraction: float | None = None,
) -> None:
    """This process's torch settings for training: intra-op threads (the CPUs the caller was
    granted), flush-to-zero (denormals are slow on CPUs and change no result that matters
    here), and on CUDA a memory cap of ``gpu_fraction`` of the device."""
    if threads is not None:
        if not is_int(threads) or threads < 1:
            raise UserError(f"threads: expected an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    target = resolve_device(device)
    if target.type == "cuda" and gpu_fraction is not None:
        if not 0 < gpu_fraction <= 1:
            raise UserError(f"gpu_fraction: expected a number in (0, 1], got {gpu_fraction!r}")
        torch.cuda.set_per_process_memory_fraction(float(gpu_fraction), target)


class _DeviceSplit:
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
        rgb = self.rgb[index].float().div_(255).contiguous(memory_format=memory_format)
        xyza = self.xyza[index].contiguous(memory_format=memory_format)
        return rgb, xyza, self.labels[index]


def device_splits(data: CilpArrays, device: torch.device) -> tuple[_DeviceSplit, _DeviceSplit]:
    """The train and validation splits resident on `device`; UserError if one is empty."""
    n_train, n_val = int(data.is_train.sum()), int((~data.is_train).sum())
    if n_train == 0 or n_val == 0:
        raise UserError(f"data: need train and validation scenes, got {n_train} and {n_val}")
    return _DeviceSplit(data.train, device), _DeviceSplit(data.validation, device)


class ResumableLoop:
    """The resumable bookkeeping of a training loop, shared by Trainer and the CILP stage
    trainers: config, optimiser, scheduler, batch-order generator, epoch, best weights by
    validation loss and the per-epoch history. A subclass names the module it trains
    (trained_module); state_dict() is then everything needed to continue exactly."""

    cfg: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    epoch: int
    best_val_loss: float
    best_epoch: int
    history: list[dict[str, float | int]]
    _best_state: dict[str, torch.Tensor]

    def trained_module(self) -> nn.Module:
        raise NotImplementedError

    def _start_loop(self, seed: int) -> None:
        """Epoch 0: no best yet, the initial weights as the best so far, and the batch order's
        own generator (so nothing else that draws random numbers shifts it)."""
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.best_val_loss = math.inf
        self.best_epoch = 0
        self._best_state = _copy_state(self.trained_module().state_dict())
        self.history = []

    def _end_epoch(
        self, train_loss: float, val: dict[str, float], lr: float, elapsed: float, samples: int
    ) -> dict[str, float | int]:
        """Count the epoch, keep the best weights by val_loss, and return (and record) the
        epoch's metrics in the schema's order (tune_cilp.core.metrics.EPOCH)."""
        self.epoch += 1
        if val["val_loss"] < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val["val_loss"], self.epoch
            self._best_state = _copy_state(self.trained_module().state_dict())
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

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (tensors are live: save before
        training on). Loads with torch.load(weights_only=True)."""
        return {
            "config": self.cfg.to_dict(),
            "model": self.trained_module().state_dict(),
            "best_model": self._best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            # Training draws random numbers from the batch-order generator only.
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
            self.trained_module().load_state_dict(state["model"])
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


class Trainer(ResumableLoop):
    """Trains one model on ``data`` (its is_train / validation split), one epoch per run_epoch().

    Attributes the caller records: device, precision ("fp32" | "bf16"), channels_last,
    num_parameters. Touches no process-wide state (see configure_process).
    """

    def __init__(
        self, cfg: TrainConfig, data: CilpArrays, *, device: str | torch.device | None = None
    ):
        self.cfg = cfg
        self.device = resolve_device(device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.channels_last = resolve_channels_last(cfg.channels_last, self.device)
        self._memory_format = torch.channels_last if self.channels_last else torch.contiguous_format

        self.train_data, self.val_data = device_splits(data, self.device)

        # The initial weights come from the seed alone, and the global generator is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = self._new_model()
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs, eta_min=cfg.eta_min
        )
        self._pos_weight = (
            None if cfg.pos_weight is None else torch.tensor(cfg.pos_weight, device=self.device)
        )
        self._start_loop(cfg.seed)

    def _new_model(self) -> nn.Module:
        model = build_model(self.cfg.model_config).to(self.device)
        return model.to(memory_format=self._memory_format)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    @property
    def done(self) -> bool:
        """Whether the configured number of epochs has been trained."""
        return self.epoch >= self.cfg.epochs

    def _train_one_epoch(self) -> float:
        self.model.train()
        data, bs = self.train_data, self.cfg.batch_size
        order = torch.randperm(len(data), generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device)
        for start in range(0, len(data), bs):
            rgb, xyza, labels = data.batch(order[start : start + bs], self._memory_format)
            with self._autocast():
                logits = self.model(rgb, xyza)[:, 0]
            loss = F.binary_cross_entropy_with_logits(
                logits.float(), labels, pos_weight=self._pos_weight
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(labels)  # stays on the device: no sync per batch
        return total.item() / len(data)

    @torch.inference_mode()
    def _logits(self, model: nn.Module, data: _DeviceSplit) -> torch.Tensor:
        model.eval()
        out, step = [], EVAL_BATCH.get(self.device.type, 32)
        for start in range(0, len(data), step):
            rgb, xyza, _ = data.batch(slice(start, start + step), self._memory_format)
            with self._autocast():
                out.append(model(rgb, xyza)[:, 0].float())
        return torch.cat(out)

    def run_epoch(self) -> dict[str, float | int]:
        """Train one epoch, evaluate, keep the best weights; returns that epoch's metrics."""
        if self.done:
            raise RuntimeError(f"training already finished ({self.cfg.epochs} epochs)")
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        train_loss = self._train_one_epoch()
        val = _metrics(self._logits(self.model, self.val_data), self.val_data.labels)
        self.scheduler.step()
        samples = len(self.train_data) + len(self.val_data)
        return self._end_epoch(train_loss, val, lr, time.perf_counter() - start, samples)

    def best_model(self) -> nn.Module:
        """A fresh model (eval mode, on the trainer's device) holding the best weights so far."""
        model = self._new_model()
        model.load_state_dict(self._best_state)
        return model.eval()

    def trained_module(self) -> nn.Module:
        return self.model


def _copy_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


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
