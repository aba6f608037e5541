"""The fusion model zoo: one parameterised RGB + LiDAR network, variants chosen by name.

Every variant is the same four-part pipeline (docs/PROTOCOL.md, section 1):

    per-modality encoders  ->  fusion op  ->  shared trunk  ->  head

and differs only in where the two modalities meet:

    variant   encoders (each)                   fusion             trunk
    early     none                              concat -> 8        conv 8->c0 v, c0->c1 v,
                                                                   c1->c2 v, c2->c2
    concat    conv 4->c0 v, c0->c1 v            concat -> 2*c1     conv 2*c1->c2 v, c2->c2
    add       conv 4->c0 v, c0->c1 v            sum -> c1          conv c1->c2 v, c2->c2
    hadamard  conv 4->c0 v, c0->c1 v            product -> c1      conv c1->c2 v, c2->c2
    late      conv 4->c0 v, c0->c1 v, c1->c2 v, concat -> 2*hidden (none)
              flatten, linear -> hidden, ReLU,
              linear -> hidden, L2-normalise
    rgb       one: conv 4->c0 v, c0->c1 v       the RGB features   conv c1->c2 v, c2->c2
    lidar     one: conv 4->c0 v, c0->c1 v       the XYZA features  conv c1->c2 v, c2->c2

rgb and lidar are the single-modality baselines ("what does the other modality add?"): add's
network with one encoder, whose forward(rgb, xyza) ignores the other input.

"v" marks a downsampling conv: followed by MaxPool2d(2) (downsample="maxpool") or with stride 2
(downsample="stride"). All convs are 3x3, padding 1, followed by ReLU, which comes after the pool
where there is one (conv -> pool -> ReLU). Every variant but late ends
in the head flatten -> linear hidden -> ReLU -> linear num_classes; late's head is
linear 2*hidden -> hidden -> ReLU -> linear num_classes.

Parameter counts with the default channels (50, 100, 200), hidden 100, one class:
concat 2,094,501; add and hadamard 1,914,501; late 3,054,901; early 1,869,351 (early mirrors add
with the fusion moved to the input: the same convs and head, first conv 8 -> 50); rgb and lidar
1,867,551.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tune_cilp.data import IMAGE_SIZE
from tune_cilp.errors import UserError

IN_CHANNELS = 4  # RGBA and XYZA
DOWNSAMPLES: tuple[str, ...] = ("maxpool", "stride")


@dataclass(frozen=True)
class Variant:
    """Where the modalities meet ("input", "features" or "embedding") and how ("concat" ...)."""

    fuse_at: str
    op: str


# The registry (timm style: look up by name). Adding a variant is one line here.
VARIANTS: dict[str, Variant] = {
    "late": Variant(fuse_at="embedding", op="concat"),
    "concat": Variant(fuse_at="features", op="concat"),
    "add": Variant(fuse_at="features", op="add"),
    "hadamard": Variant(fuse_at="features", op="mul"),
    "early": Variant(fuse_at="input", op="concat"),
    "rgb": Variant(fuse_at="features", op="rgb"),
    "lidar": Variant(fuse_at="features", op="lidar"),
}
SINGLE_INPUT_OPS = ("rgb", "lidar")  # "fusion" ops that take one modality's features alone


@dataclass(frozen=True)
class ModelConfig:
    """What build_model needs: the variant name, the downsampling, widths and output size."""

    variant: str = "concat"
    downsample: str = "maxpool"
    channels: tuple[int, int, int] = (50, 100, 200)
    hidden: int = 100
    num_classes: int = 1

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UserError(
                f"variant: unknown {self.variant!r}; choose one of {', '.join(list_variants())}"
            )
        if self.downsample not in DOWNSAMPLES:
            raise UserError(
                f"downsample: unknown {self.downsample!r}; choose one of {', '.join(DOWNSAMPLES)}"
            )
        if len(self.channels) != 3 or any(int(c) < 1 for c in self.channels):
            raise UserError(f"channels: expected three positive widths, got {self.channels!r}")
        if self.hidden < 1 or self.num_classes < 1:
            raise UserError(
                f"hidden, num_classes: must be >= 1, got {self.hidden}, {self.num_classes}"
            )


def list_variants() -> list[str]:
    """Every registered variant name, the single-modality baselines included."""
    return sorted(VARIANTS)


def fusion_variants() -> list[str]:
    """The variants that fuse both modalities: ['add', 'concat', 'early', 'hadamard', 'late']."""
    return sorted(n for n, v in VARIANTS.items() if v.op not in SINGLE_INPUT_OPS)


def variant_name(config: Mapping[str, Any]) -> str:
    """A configuration's model name, e.g. "concat-maxpool": what tables and reports call it."""
    return f"{config.get('variant', '?')}-{config.get('downsample', '?')}"


def _conv(c_in: int, c_out: int, downsample: str | None) -> list[nn.Module]:
    """3x3 conv, then ReLU; with downsample "maxpool" a 2x2 pool between, with "stride" stride 2.

    Pool then ReLU gives exactly the values and gradients of ReLU then pool (ReLU is monotone,
    so it commutes with max) with ReLU on a quarter of the elements. The ReLU is in place: neither
    the pool's nor the conv's backward reads its output (autograd's version check guards this),
    though autograd refuses a full backward hook on the module before an in-place op.
    """
    stride = 2 if downsample == "stride" else 1
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)]
    if downsample == "maxpool":
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.ReLU(inplace=True)]


class L2Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


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
        if self.op in SINGLE_INPUT_OPS:
            return self.head(self.trunk(self.encoders[0](rgb if self.op == "rgb" else xyza)))
        a, b = (rgb, xyza) if not self.encoders else (self.encoders[0](rgb), self.encoders[1](xyza))
        if self.op == "concat":
            x = torch.cat((a, b), dim=1)
        elif self.op == "add":
            x = a + b
        else:
            x = a * b
        return self.head(self.trunk(x))


def build_model(cfg: ModelConfig) -> FusionNet:
    """The network for ``cfg``: forward(rgb (B,4,64,64) in [0,1], xyza (B,4,64,64)) -> logits."""
    variant = VARIANTS[cfg.variant]
    c0, c1, c2 = cfg.channels
    v = cfg.downsample
    flat = c2 * (IMAGE_SIZE // 8) ** 2  # three downsamplings: 64 -> 8

    def classifier(width: int) -> list[nn.Module]:
        return [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.num_classes)]

    def encoder() -> nn.Sequential:
        layers = _conv(IN_CHANNELS, c0, v) + _conv(c0, c1, v)
        if variant.fuse_at == "embedding":
            layers += _conv(c1, c2, v) + [nn.Flatten()]
            layers += [nn.Linear(flat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden)]
            layers.append(L2Normalize())
        return nn.Sequential(*layers)

    if variant.fuse_at == "input":
        encoders = nn.ModuleList()
        trunk = _conv(2 * IN_CHANNELS, c0, v) + _conv(c0, c1, v) + _conv(c1, c2, v)
        trunk += _conv(c2, c2, None)
        head = [nn.Flatten(), *classifier(flat)]
    elif variant.fuse_at == "features":
        single = variant.op in SINGLE_INPUT_OPS
        encoders = nn.ModuleList([encoder()] if single else [encoder(), encoder()])
        fused = 2 * c1 if variant.op == "concat" else c1
        trunk = _conv(fused, c2, v) + _conv(c2, c2, None)
        head = [nn.Flatten(), *classifier(flat)]
    else:
        encoders = nn.ModuleList([encoder(), encoder()])
        trunk = []
        head = classifier(2 * cfg.hidden)
    return FusionNet(encoders, variant.op, nn.Sequential(*trunk), nn.Sequential(*head))


def forward_flops(cfg: ModelConfig) -> int:
    """Forward FLOPs per sample (2 per multiply-add of convs and linears; ReLU, pools, bias,
    fusion ops ignored): ~447 MFLOP for concat-maxpool, ~148 MFLOP for concat-stride."""
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = build_model(cfg)
        rgb = torch.zeros(1, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            total += 2 * k * output.numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        model(rgb, rgb)
    finally:
        for hook in hooks:
            hook.remove()
    return total
