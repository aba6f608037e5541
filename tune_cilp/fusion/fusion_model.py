"""The fusion networks: build_model(ModelConfig) -> FusionNet. The variants, their layer plan
and sizes are described in tune_cilp.fusion.variants (the registry, torch-free)."""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import nn

from tune_cilp.data.constants import IMAGE_SIZE
from tune_cilp.fusion.variants import IN_CHANNELS, OPS, VARIANTS, ModelConfig
from tune_cilp.training.layers import L2Normalize, conv_block

# Each fusion op of tune_cilp.fusion.variants.OPS that takes both inputs: (a, b) -> fused.
FUSE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "concat": lambda a, b: torch.cat((a, b), dim=1),
    "add": operator.add,
    "mul": operator.mul,
}


class FusionNet(nn.Module):
    """Two encoders (one for a single-modality op, none for early fusion), a fusion op, a trunk
    and a head; forward(rgb, xyza) -> logits."""

    def __init__(self, encoders: nn.ModuleList, op: str, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.encoders = encoders  # empty for early fusion: the raw inputs are fused
        self.op = op
        self.trunk = trunk
        self.head = head

    def forward(self, rgb: torch.Tensor, xyza: torch.Tensor) -> torch.Tensor:
        single = OPS[self.op].modality
        if single:
            return self.head(self.trunk(self.encoders[0](rgb if single == "rgb" else xyza)))
        a, b = (rgb, xyza) if not self.encoders else (self.encoders[0](rgb), self.encoders[1](xyza))
        return self.head(self.trunk(FUSE[self.op](a, b)))


def build_model(cfg: ModelConfig) -> FusionNet:
    """The network for ``cfg``: forward(rgb (B,4,64,64) in [0,1], xyza (B,4,64,64)) -> logits."""
    variant = VARIANTS[cfg.variant]
    c0, c1, c2 = cfg.channels
    v = cfg.downsample
    flat = c2 * (IMAGE_SIZE // 8) ** 2  # three downsamplings: 64 -> 8

    def classifier(width: int) -> list[nn.Module]:
        return [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.num_classes)]

    def encoder() -> nn.Sequential:
        layers = conv_block(IN_CHANNELS, c0, v) + conv_block(c0, c1, v)
        if variant.fuse_at == "embedding":
            layers += conv_block(c1, c2, v) + [nn.Flatten()]
            layers += [nn.Linear(flat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden)]
            layers.append(L2Normalize())
        return nn.Sequential(*layers)

    if variant.fuse_at == "input":
        encoders = nn.ModuleList()
        fused = variant.fusion.width * IN_CHANNELS
        trunk = conv_block(fused, c0, v) + conv_block(c0, c1, v) + conv_block(c1, c2, v)
        trunk += conv_block(c2, c2, None)
        head = [nn.Flatten(), *classifier(flat)]
    elif variant.fuse_at == "features":
        encoders = nn.ModuleList([encoder() for _ in range(variant.fusion.inputs)])
        fused = variant.fusion.width * c1
        trunk = conv_block(fused, c2, v) + conv_block(c2, c2, None)
        head = [nn.Flatten(), *classifier(flat)]
    else:
        encoders = nn.ModuleList([encoder(), encoder()])
        trunk = []
        head = classifier(variant.fusion.width * cfg.hidden)
    return FusionNet(encoders, variant.op, nn.Sequential(*trunk), nn.Sequential(*head))
