"""The CILP stages' trainers (docs/CILP.md), each a StageTrainer (the shared TrainingLoop),
each named by its Stage (tune_cilp/cilp/stages.py), which make_trainer reads:

    contrastive  both embedders, contrastive loss          -> rgb, lidar (+ scale)
    projector    frozen embedders; projector, MSE          -> + projector (+ lidar_cnn, frozen)
    classifier   image embedder -> projector -> head, BCE  -> + head: the RGB-only classifier

A stage's module is an nn.ModuleDict of its parts. Its input is the best weights of the stage
before, from the checkpoint file its config names (load_stage_checkpoint: weights_only, and of
the right stage). Parts a stage does not train are frozen (TrainingLoop.frozen_parts) and
computed once where that is exact (frozen, no randomness): the projector's inputs and targets,
and the classifier's projected embeddings when nothing before its head trains.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tune_cilp.cilp.cilp_model import (
    FLAT,
    LIDAR_INPUTS,
    LidarCNN,
    RgbClassifier,
    check_lidar_cnn_state,
    embedder,
    head,
    lidar_input,
    projector,
)
from tune_cilp.cilp.losses import (
    SEED_SCALE,
    LogitScale,
    contrastive_loss,
    retrieval_top1,
    similarity_logits,
)
from tune_cilp.cilp.probes import linear_probe, probe_results
from tune_cilp.cilp.stage_configs import (
    ClassifierConfig,
    ContrastiveConfig,
    ProjectorConfig,
    StageConfig,
    checkpoint_key,
)
from tune_cilp.cilp.stages import get_stage, stage_config
from tune_cilp.core.checkpoint import in_experiment, load_checkpoint
from tune_cilp.core.errors import UserError
from tune_cilp.data import CilpArrays
from tune_cilp.training.balance import class_balance
from tune_cilp.training.loop import DeviceSplit, TrainingLoop


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


def rgb_classifier(state: dict[str, Any]) -> RgbClassifier:
    """The RGB-only classifier with the weights a classifier-stage checkpoint kept (best_model),
    built from the checkpoint alone (its contrastive config gives the embedder's shape, the head
    its input width: the projected embedding, or NVIDIA's 3,200-d one)."""
    best = state["best_model"]
    c: ContrastiveConfig = stage_config(state["contrastive_config"])
    out_dim = int(best["head.0.weight"].shape[1])
    model = RgbClassifier(
        embedder(4, c.emb_dim, c.downsample), projector(c.emb_dim, out_dim), head(out_dim)
    )
    parts = ("rgb.", "projector.", "head.")
    model.load_state_dict({k: v for k, v in best.items() if k.startswith(parts)})
    return model.eval()


def load_lidar_cnn(path: str) -> dict[str, torch.Tensor]:
    """NVIDIA's LiDAR CNN state dict from ``path`` (weights_only); UserError for anything else."""
    return check_lidar_cnn_state(load_checkpoint(path), path)


def _embedders(c: ContrastiveConfig) -> dict[str, nn.Module]:
    return {
        "rgb": embedder(4, c.emb_dim, c.downsample),
        "lidar": embedder(LIDAR_INPUTS[c.lidar_input], c.emb_dim, c.downsample),
    }


class StageTrainer(TrainingLoop):
    """A CILP stage: its parts (an nn.ModuleDict) and its epochs."""

    cfg: StageConfig

    def __init__(self, cfg: StageConfig, data: CilpArrays, *, root: str = "", **kwargs: Any):
        self.root = root  # the experiment that relative checkpoint paths in cfg are in
        super().__init__(cfg, data, **kwargs)

    @property
    def parts(self) -> nn.ModuleDict:
        """The stage's parts, by name."""
        return self.module

    @property
    def num_epochs(self) -> int:
        return self.cfg.total_epochs

    def best_parts(self) -> nn.ModuleDict:
        """A fresh copy of the parts (eval mode, on the trainer's device) with the best weights."""
        return self.best_module()

    def probes(self) -> dict[str, float]:
        """Linear probes of what this stage produces, on its best weights (probe_* results)."""
        return {}

    def run_epoch(self) -> dict[str, float | int]:
        """TrainingLoop.run_epoch; the last epoch's row adds the stage's probes."""
        metrics = super().run_epoch()
        if self.done:
            probes = self.probes()
            metrics.update(probes)
            self.history[-1].update(probes)
        return metrics

    def _probe(self, what: str, features: dict[str, torch.Tensor]) -> dict[str, float]:
        """linear_probe on train / val features of the two splits, under probe_<what>_* keys."""
        train, val = (features[s].float().cpu().numpy() for s in ("train", "val"))
        labels = (self.train_data.labels.cpu().numpy(), self.val_data.labels.cpu().numpy())
        return probe_results(what, linear_probe(train, labels[0], val, labels[1]))


class ContrastiveTrainer(StageTrainer):
    cfg: ContrastiveConfig

    def build(self) -> nn.ModuleDict:
        parts = _embedders(self.cfg)
        if self.cfg.similarity == "clip":
            parts["scale"] = LogitScale(self.cfg.logit_scale_init)
        return nn.ModuleDict(parts)

    def _logits(self, rgb: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
        scale = self.parts["scale"]() if "scale" in self.parts else None
        return similarity_logits(rgb, lidar, self.cfg.similarity, scale)

    def _rgb(self, rgb: torch.Tensor, xyza: torch.Tensor) -> torch.Tensor:
        return self.parts["rgb"](rgb)

    def _lidar(self, rgb: torch.Tensor, xyza: torch.Tensor) -> torch.Tensor:
        return self.parts["lidar"](lidar_input(xyza, self.cfg.lidar_input))

    def train_epoch(self) -> float:
        total = torch.zeros((), device=self.device)
        for index in self.batches(len(self.train_data)):
            rgb, xyza, _ = self.train_data.batch(index, self.memory_format)
            with self.autocast():
                a, b = self._rgb(rgb, xyza), self._lidar(rgb, xyza)
            loss = contrastive_loss(self._logits(a.float(), b.float()))
            self.step(loss)
            if "scale" in self.parts:
                self.parts["scale"].clamp_()
            total += loss.detach() * len(index)
        return total.item() / len(self.train_data)

    def evaluate(self) -> dict[str, float]:
        n, bs = len(self.val_data), self.cfg.batch_size
        rgb, lidar = (self.map_split(self.val_data, fn) for fn in (self._rgb, self._lidar))
        # The loss on validation batches of the training batch size, in split order, weighted
        # by batch size: its chance level is ln(batch), as in training.
        loss = sum(
            contrastive_loss(self._logits(rgb[s : s + bs], lidar[s : s + bs])).item()
            * len(rgb[s : s + bs])
            for s in range(0, n, bs)
        )
        r2l, l2r = retrieval_top1(rgb, lidar)
        scale = self.parts["scale"]().item() if "scale" in self.parts else SEED_SCALE
        return {
            "val_loss": loss / n,
            "val_top1_rgb_to_lidar": r2l,
            "val_top1_lidar_to_rgb": l2r,
            "logit_scale": scale,
        }

    def probes(self) -> dict[str, float]:
        """Probes of the image and the LiDAR embedding (the best weights)."""
        best = self.best_parts()
        out: dict[str, float] = {}
        for what, fn in (
            ("rgb", lambda rgb, xyza: best["rgb"](rgb)),
            ("lidar", lambda rgb, xyza: best["lidar"](lidar_input(xyza, self.cfg.lidar_input))),
        ):
            splits = (("train", self.train_data), ("val", self.val_data))
            out.update(self._probe(what, {s: self.map_split(d, fn) for s, d in splits}))
        return out


class Downstream(StageTrainer):
    """A stage that starts from the best weights of its upstream stage (its Stage's)."""

    def __init__(self, cfg: StageConfig, data: CilpArrays, *, root: str = "", **kwargs):
        upstream = get_stage(cfg.stage).upstream
        if upstream is None:
            raise TypeError(f"{type(self).__name__}: stage {cfg.stage} has no upstream stage")
        self.upstream_stage = upstream.name
        path = in_experiment(root, getattr(cfg, checkpoint_key(self.upstream_stage)))
        self.upstream = load_stage_checkpoint(path, self.upstream_stage)
        self.upstream_cfg = stage_config(self.upstream["config"])
        contrastive = self.upstream.get("contrastive_config", self.upstream["config"])
        self.contrastive_cfg: ContrastiveConfig = stage_config(contrastive)
        super().__init__(cfg, data, root=root, **kwargs)

    def state_dict(self) -> dict:
        """The trainer's state plus the contrastive config (the embedders' shapes)."""
        return {**super().state_dict(), "contrastive_config": self.contrastive_cfg.to_dict()}

    def _load_upstream(self, parts: dict[str, nn.Module]) -> None:
        """Put the upstream stage's best weights into the parts of the same names."""
        best = self.upstream["best_model"]
        for name, module in parts.items():
            own = {k[len(name) + 1 :]: v for k, v in best.items() if k.startswith(f"{name}.")}
            if own:
                try:
                    module.load_state_dict(own)
                except RuntimeError as exc:
                    first = str(exc).splitlines()[0]
                    raise UserError(f"{self.upstream_stage} checkpoint: {first}") from None

    def lidar_features(self, rgb: torch.Tensor, xyza: torch.Tensor) -> torch.Tensor:
        """What the projector maps onto: NVIDIA's LiDAR CNN embedding, or the LiDAR embedding."""
        if "lidar_cnn" in self.parts:
            return self.parts["lidar_cnn"].embedder(lidar_input(xyza, "depth"))
        return self.parts["lidar"](lidar_input(xyza, self.contrastive_cfg.lidar_input))


class ProjectorTrainer(Downstream):
    cfg: ProjectorConfig

    def __init__(self, cfg: ProjectorConfig, data: CilpArrays, **kwargs):
        self.lidar_cnn = None if cfg.lidar_cnn is None else load_lidar_cnn(cfg.lidar_cnn)
        super().__init__(cfg, data, **kwargs)
        self.parts.eval()
        img = lambda rgb, xyza: self.parts["rgb"](rgb)  # noqa: E731
        self.inputs = {s: self.map_split(d, img) for s, d in self._splits()}
        self.targets = {s: self.map_split(d, self.lidar_features) for s, d in self._splits()}

    def _splits(self):
        return (("train", self.train_data), ("val", self.val_data))

    def build(self) -> nn.ModuleDict:
        parts = _embedders(self.contrastive_cfg)
        self._load_upstream(parts)
        out_dim = self.contrastive_cfg.emb_dim
        if self.lidar_cnn is not None:
            parts["lidar_cnn"] = LidarCNN()
            parts["lidar_cnn"].load_state_dict(self.lidar_cnn)
            out_dim = FLAT
        parts["projector"] = projector(self.contrastive_cfg.emb_dim, out_dim)
        return nn.ModuleDict(parts)

    def frozen_parts(self) -> tuple[str, ...]:
        return ("rgb", "lidar", *(("lidar_cnn",) if self.lidar_cnn is not None else ()))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parts["projector"].parameters())

    def train_epoch(self) -> float:
        x, y = self.inputs["train"], self.targets["train"]
        total = torch.zeros((), device=self.device)
        for index in self.batches(len(x)):
            with self.autocast():
                out = self.parts["projector"](x[index])
            loss = F.mse_loss(out.float(), y[index])
            self.step(loss)
            total += loss.detach() * len(index)
        return total.item() / len(x)

    def evaluate(self) -> dict[str, float]:
        with self.autocast():
            out = self.parts["projector"](self.inputs["val"]).float()
        y = self.targets["val"]
        return {
            "val_loss": F.mse_loss(out, y).item(),
            "val_cosine": F.cosine_similarity(out, y, dim=1).mean().item(),
        }

    @torch.no_grad()
    def probes(self) -> dict[str, float]:
        """A probe of the projected image embedding (the best projector)."""
        projector = self.best_parts()["projector"]
        with self.autocast():
            projected = {s: projector(x).float() for s, x in self.inputs.items()}
        return self._probe("projected", projected)


class ClassifierTrainer(Downstream):
    cfg: ClassifierConfig

    def __init__(self, cfg: ClassifierConfig, data: CilpArrays, **kwargs):
        super().__init__(cfg, data, **kwargs)
        self.parts.eval()
        self.projected = None
        if not cfg.finetune:  # nothing before the head trains: its inputs are fixed
            self.projected = {
                "train": self.map_split(self.train_data, self._project),
                "val": self.map_split(self.val_data, self._project),
            }
        if "lidar" in self.phases:
            self.lidar_embedded = self.map_split(self.train_data, self.lidar_features)
        self.balance = class_balance(cfg, data.train.labels, self.device)

    @property
    def phases(self) -> list[str]:
        """What each epoch trains (ClassifierConfig.phases)."""
        return self.cfg.phases(self.has_lidar_cnn)

    @property
    def has_lidar_cnn(self) -> bool:
        return self.upstream_cfg.lidar_cnn is not None

    def build(self) -> nn.ModuleDict:
        parts = _embedders(self.contrastive_cfg)
        out_dim = self.contrastive_cfg.emb_dim
        if self.has_lidar_cnn:
            parts["lidar_cnn"] = LidarCNN()
            out_dim = FLAT
        parts["projector"] = projector(self.contrastive_cfg.emb_dim, out_dim)
        self._load_upstream(parts)
        if self.has_lidar_cnn and self.cfg.mode == "nvidia":
            parts["head"] = parts["lidar_cnn"].classifier  # the same module: trained weights
        else:
            parts["head"] = head(out_dim)
        return nn.ModuleDict(parts)

    def frozen_parts(self) -> tuple[str, ...]:
        frozen = ["lidar", *(["lidar_cnn"] if self.has_lidar_cnn else [])]
        if not self.cfg.finetune:
            frozen += ["rgb", "projector"]
        return tuple(frozen)

    @property
    def num_parameters(self) -> int:
        """The RGB-only classifier's: image embedder, projector and head."""
        return sum(
            p.numel() for k in ("rgb", "projector", "head") for p in self.parts[k].parameters()
        )

    def _project(self, rgb: torch.Tensor, xyza: torch.Tensor) -> torch.Tensor:
        return self.parts["projector"](self.parts["rgb"](rgb))

    def _rgb_logits(self, split: str, data: DeviceSplit, index) -> torch.Tensor:
        if self.projected is not None:
            with self.autocast():
                return self.parts["head"](self.projected[split][index])[:, 0].float()
        rgb, xyza, _ = data.batch(index, self.memory_format)
        with self.autocast():
            return self.parts["head"](self._project(rgb, xyza))[:, 0].float()

    def phase_parts(self, epoch: int) -> tuple[str, ...]:
        """A "lidar" epoch trains the head; an "rgb" one the RGB path: the head in mode seed
        (and, with finetune, embedder and projector), only embedder and projector in mode
        nvidia (its LiDAR head is used frozen, out of the optimiser)."""
        if self.phases[epoch] == "lidar":
            return ("head",)
        path = ("rgb", "projector") if self.cfg.finetune else ()
        return (*path, "head") if self.cfg.mode == "seed" else path

    def keeps_best(self, epoch: int) -> bool:
        """Only the last phase's epochs: in mode nvidia the RGB classifier is its fine-tune."""
        return self.phases[epoch] == self.phases[-1]

    def train_epoch(self) -> float:
        phase = self.phases[self.epoch]
        data = self.train_data
        total = torch.zeros((), device=self.device)
        for index in self.batches(len(data), self.balance.sample_weights):
            if phase == "lidar":
                with self.autocast():
                    logits = self.parts["head"](self.lidar_embedded[index])[:, 0].float()
            else:
                logits = self._rgb_logits("train", data, index)
            loss = F.binary_cross_entropy_with_logits(
                logits, data.labels[index], pos_weight=self.balance.pos_weight
            )
            self.step(loss)
            total += loss.detach() * len(index)
        return total.item() / len(data)

    def evaluate(self) -> dict[str, float]:
        """The RGB-only classifier on the validation split (whatever the epoch trained)."""
        chunks = self.eval_chunks(len(self.val_data))
        logits = [self._rgb_logits("val", self.val_data, index) for index in chunks]
        return self.classify(torch.cat(logits))


def make_trainer(config: dict, data: CilpArrays, root: str = "", **kwargs: Any) -> StageTrainer:
    """The trainer of a trial config (its ``stage`` key picks the Stage: its config class and
    its trainer); `root`: the experiment a relative upstream checkpoint path is in."""
    cfg = stage_config(config)
    return get_stage(cfg.stage).trainer_class()(cfg, data, root=root, **kwargs)
