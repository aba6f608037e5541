"""Packed seeds (issue 33): K seeds of one fusion configuration trained at once, as one model.

Each seed is a fusion Trainer built exactly as its solo trial builds it: initial weights from its
seed, its own batch-order generator and class balance, its own validation bookkeeping (metrics,
best epoch and weights, per-scene scores). Only the training step is shared: the K parameter sets
are stacked (torch.func.stack_module_state), the K models' mean losses on their K batches are
summed (so each model's gradient is its own loss's) and one Adam steps over the stacked
parameters. Adam and its weight decay are element-wise and the seeds share the configuration's
learning-rate schedule, so that is K independent Adams. After each epoch every seed's slice is
copied into its Trainer's module, which then evaluates and keeps its best as a solo trial does.

The models' forward and backward run in one of two modes (MODES). LOOP (the default) runs each
model with its own kernels on its weights in their solo layout: every reported loss is its solo
trial's within 1e-5 relative in fp32 (measured 4e-8 over 3 epochs; tested). VMAP batches the K
models into one kernel per layer (torch.func.vmap over functional_call): fewer launches, which
is what a GPU wants, but batched kernels round differently, and a ReLU input within rounding of
0 then takes the other side: the first step agrees, later epochs drift apart (measured by
benchmarks/bench_packed.py). The fusion networks have no BatchNorm, dropout or other state of
their own to batch, so vmap needs nothing else.

A seed's state (`state_dict()["seeds"][k]`) is its solo trial's: its module, best weights,
generator, history and its slice of Adam's moments, so a packed checkpoint resumes packed or
seed by seed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from tune_cilp.core.errors import UserError
from tune_cilp.core.predictions import Predictions
from tune_cilp.data.arrays import CilpArrays
from tune_cilp.experiment.run_settings import PACKED
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer

# How the K models' step runs: LOOP, each model with its own kernels (solo's arithmetic, bit
# for bit where the kernels are deterministic; K launches per layer), or VMAP, batched kernels
# (one launch per layer for all K; they round differently, so seeds drift from their solo runs).
LOOP, VMAP = "loop", "vmap"
MODES = (LOOP, VMAP)


def packed_configs(cfg: TrainConfig, seeds: Sequence[int]) -> list[TrainConfig]:
    """The configuration once per seed (UserError for no seed or a seed twice)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"packed seeds must be distinct and at least one, got {list(seeds)}")
    return [replace(cfg, seed=int(seed)) for seed in seeds]


class PackedTrainer:
    """Trains one Trainer per config of `cfgs` (one configuration, K seeds) with a shared step;
    run_epoch() returns each seed's metrics for the epoch, in the configs' order."""

    def __init__(
        self,
        cfgs: Sequence[TrainConfig],
        data: CilpArrays,
        *,
        device: str | torch.device | None = None,
        mode: str = LOOP,
    ):
        if not cfgs or any(replace(c, seed=cfgs[0].seed) != cfgs[0] for c in cfgs):
            raise UserError("packed seeds must share one configuration but for their seed")
        if mode not in MODES:
            raise UserError(f"packing mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        self.trainers = [Trainer(cfg, data, device=device) for cfg in cfgs]
        first = self.trainers[0]
        for t in self.trainers[1:]:  # one copy of the data on the device, not K
            t.train_data, t.val_data, t.test_data = (
                first.train_data,
                first.val_data,
                first.test_data,
            )
        self.device, self.precision = first.device, first.precision
        self._base = copy.deepcopy(first.module).to("meta")  # the architecture, no weights
        self._stack()

    # The packed state -----------------------------------------------------------------------
    def _stack(self) -> None:
        """Stacked parameters from the trainers' modules, and an Adam and schedule over them
        holding the trainers' own optimiser and schedule states (fresh ones: empty)."""
        modules = [t.module for t in self.trainers]
        params, self.buffers = stack_module_state(modules)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        cfg = self.trainers[0].cfg
        self.optimizer = torch.optim.Adam(
            list(self.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.trainers[0].num_epochs, eta_min=cfg.eta_min
        )
        solo = [t.optimizer.state_dict() for t in self.trainers]
        if solo[0]["state"]:  # restored: stack the seeds' Adam moments
            packed = self.optimizer.state_dict()
            packed["state"] = {
                i: {
                    "step": solo[0]["state"][i]["step"].clone(),
                    **{m: torch.stack([s["state"][i][m] for s in solo]) for m in MOMENTS},
                }
                for i in solo[0]["state"]
            }
            packed["param_groups"][0].update(_group(solo[0]["param_groups"][0]))
            self.optimizer.load_state_dict(packed)
        self.scheduler.load_state_dict(self.trainers[0].scheduler.state_dict())

    def _unstack(self) -> None:
        """Each seed's slice into its trainer's module, and its Adam moments into its own
        optimiser (so its state_dict() is its solo trial's)."""
        packed = self.optimizer.state_dict()
        for k, t in enumerate(self.trainers):
            with torch.no_grad():
                for name, p in t.module.named_parameters():
                    p.copy_(self.params[name][k])
            solo = t.optimizer.state_dict()
            solo["state"] = {
                i: {"step": s["step"].clone(), **{m: s[m][k].clone() for m in MOMENTS}}
                for i, s in packed["state"].items()
            }
            solo["param_groups"][0].update(_group(packed["param_groups"][0]))
            t.optimizer.load_state_dict(solo)
            t.scheduler.load_state_dict(self.scheduler.state_dict())

    # Training -------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.trainers[0].done

    def epochs(self):
        while not self.done:
            yield self.run_epoch()

    def _losses(self, params, buffers, rgb, xyza, labels, pos_weight):
        """The K mean losses of the K models on their K batches."""
        fmt = self.trainers[0].memory_format

        def one(p, b, r, x, y):
            logits = functional_call(self._base, (p, b), (r, x))[:, 0]
            return F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight)

        with self.trainers[0].autocast():
            if self.mode == VMAP:
                return vmap(one)(params, buffers, rgb, xyza, labels)
            # Each model with its own kernels, on weights in its solo layout: solo's arithmetic.
            return torch.stack([
                one({n: _layout(v[k], fmt) for n, v in params.items()},
                    {n: v[k] for n, v in buffers.items()}, rgb[k], xyza[k], labels[k])
                for k in range(len(self.trainers))
            ])  # fmt: skip

    def _train_epoch(self) -> list[float]:
        first = self.trainers[0]
        data, fmt = first.train_data, first.memory_format
        orders = [t.batches(len(data), t.balance.sample_weights) for t in self.trainers]
        total = torch.zeros(len(self.trainers), device=self.device)
        for indices in zip(*orders, strict=True):
            batches = [data.batch(index, fmt) for index in indices]
            rgb, xyza, labels = (torch.stack(parts) for parts in zip(*batches, strict=True))
            losses = self._losses(
                self.params, self.buffers, rgb, xyza, labels, first.balance.pos_weight
            )
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # each model's gradient is its own loss's
            self.optimizer.step()
            total += losses.detach() * labels.shape[1]  # on the device: no sync per batch
        return (total / len(data)).tolist()

    def run_epoch(self) -> list[dict[str, float | int]]:
        """Train every seed one epoch at once, then evaluate each as its solo trial does; each
        seed's metrics (its epoch_time_s: the packed epoch's wall time, shared)."""
        if self.done:
            raise RuntimeError(f"training already finished ({self.trainers[0].num_epochs} epochs)")
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        train_losses = self._train_epoch()
        self.scheduler.step()
        self._unstack()
        vals = []
        for t in self.trainers:
            t.module.eval()
            with torch.inference_mode():
                vals.append(t.evaluate())
        elapsed = time.perf_counter() - start
        first = self.trainers[0]
        samples = len(first.train_data) + len(first.val_data)
        if first.test_data is not None:
            samples += len(first.test_data)
        return [
            t.end_epoch(loss, val, lr, elapsed, samples)
            for t, loss, val in zip(self.trainers, train_losses, vals, strict=True)
        ]

    # Checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Each seed's solo state (see the module docstring)."""
        return {"seeds": [t.state_dict() for t in self.trainers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        seeds = state.get("seeds")
        if not isinstance(seeds, list) or len(seeds) != len(self.trainers):
            raise UserError(
                f"checkpoint holds {len(seeds) if isinstance(seeds, list) else 'no'} packed "
                f"seeds, this run packs {len(self.trainers)}"
            )
        for t, s in zip(self.trainers, seeds, strict=True):
            t.load_state_dict(s)
        self._stack()


MOMENTS = ("exp_avg", "exp_avg_sq")  # Adam's per-parameter state besides its step


def _layout(weight: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """A seed's slice of a stacked weight in the memory layout its solo module keeps it in."""
    return weight.contiguous(memory_format=fmt) if weight.dim() == 4 else weight


def _group(group: Mapping[str, Any]) -> dict[str, Any]:
    """An Adam param group's settings (its learning rate among them), without its params."""
    return {k: v for k, v in group.items() if k != "params"}


class PackedTrial:
    """A PackedTrainer as the trial loop (tune_cilp.experiment.trial.run_trial) drives a
    trainer: one report per epoch holding every seed's metrics under PACKED/<seed> (results.py
    splits them into one trial per seed) and, for Tune's own view (its metric, the progress
    line), the seeds' mean losses; one record of per-scene scores per seed."""

    def __init__(self, cfgs: Sequence[TrainConfig], data: CilpArrays):
        self.packed = PackedTrainer(cfgs, data)
        self.seeds = [t.cfg.seed for t in self.packed.trainers]
        first = self.packed.trainers[0]
        self.device, self.precision = first.device, first.precision
        self.num_parameters = first.num_parameters

    @property
    def done(self) -> bool:
        return self.packed.done

    @property
    def epoch(self) -> int:
        """Epochs trained (every seed's alike)."""
        return self.packed.trainers[0].epoch

    def epochs(self):
        while not self.done:
            per_seed = self.packed.run_epoch()
            yield {
                "epoch": per_seed[0]["epoch"],
                **{k: sum(m[k] for m in per_seed) / len(per_seed) for k in MEAN_KEYS},
                "epoch_time_s": per_seed[0]["epoch_time_s"],
                PACKED: {str(s): m for s, m in zip(self.seeds, per_seed, strict=True)},
            }

    def predictions(self) -> dict[int, Predictions] | None:
        records = {
            s: t.predictions() for s, t in zip(self.seeds, self.packed.trainers, strict=True)
        }
        return None if any(r is None for r in records.values()) else records

    def state_dict(self) -> dict[str, Any]:
        return self.packed.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.packed.load_state_dict(state)


MEAN_KEYS = ("train_loss", "val_loss")  # a packed report's own: the seeds' mean
