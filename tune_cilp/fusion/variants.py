"""The fusion model zoo's registry: one parameterised RGB + LiDAR network, variants chosen by
name. Names, configurations and analytic sizes live here without torch (the driver checks
configurations and plans CPU threads from them before any trial starts: importing torch would
cost it ~2 s); tune_cilp.fusion.fusion_model builds the networks.

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

from tune_cilp.core.errors import UserError
from tune_cilp.data.constants import IMAGE_SIZE

IN_CHANNELS = 4  # RGBA and XYZA
DOWNSAMPLES: tuple[str, ...] = ("maxpool", "stride")


FUSE_AT: tuple[str, ...] = ("input", "features", "embedding")


@dataclass(frozen=True)
class Op:
    """A fusion op: how many inputs it takes (2, or 1 for a single-modality baseline, which
    takes its `modality`'s features alone) and how many times one input's width it outputs."""

    inputs: int = 2
    width: int = 1
    modality: str = ""  # "rgb" or "lidar" for a single-input op


# Fusion ops by name; each has its tensor function in tune_cilp.fusion.fusion_model.FUSE.
OPS: dict[str, Op] = {
    "concat": Op(width=2),
    "add": Op(),
    "mul": Op(),
    "rgb": Op(inputs=1, modality="rgb"),
    "lidar": Op(inputs=1, modality="lidar"),
}


@dataclass(frozen=True)
class Variant:
    """Where the modalities meet ("input", "features" or "embedding") and how (an op of OPS);
    an unknown place or op is refused here, when the registry is built."""

    fuse_at: str
    op: str

    def __post_init__(self) -> None:
        if self.fuse_at not in FUSE_AT:
            raise ValueError(f"fuse_at: expected one of {', '.join(FUSE_AT)}, got {self.fuse_at!r}")
        if self.op not in OPS:
            raise ValueError(f"op: expected one of {', '.join(OPS)}, got {self.op!r}")
        if OPS[self.op].inputs == 1 and self.fuse_at != "features":
            raise ValueError(f"op {self.op!r} takes one modality's features: fuse_at features")

    @property
    def fusion(self) -> Op:
        return OPS[self.op]


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
    return sorted(n for n, v in VARIANTS.items() if v.fusion.inputs == 2)


def variant_name(config: Mapping[str, Any]) -> str:
    """A configuration's model name, e.g. "concat-maxpool": what tables and reports call it."""
    return f"{config.get('variant', '?')}-{config.get('downsample', '?')}"


def forward_flops(cfg: ModelConfig) -> int:
    """Forward FLOPs per sample (2 per multiply-add of convs and linears; ReLU, pools, bias,
    fusion ops ignored): ~447 MFLOP for concat-maxpool, ~148 MFLOP for concat-stride. Counted
    from the architecture above (tests/fusion/test_models.py checks it against the built
    networks)."""
    variant = VARIANTS[cfg.variant]
    c0, c1, c2 = cfg.channels
    total, size = 0, IMAGE_SIZE

    def conv(c_in: int, c_out: int, downsample: bool) -> int:
        # a strided conv computes only the downsampled outputs; a pool sees the full-size conv
        nonlocal size
        out = size // 2 if downsample and cfg.downsample == "stride" else size
        size = size // 2 if downsample else size
        return 2 * 9 * c_in * c_out * out * out

    def linear(c_in: int, c_out: int) -> int:
        return 2 * c_in * c_out

    flat = c2 * (IMAGE_SIZE // 8) ** 2  # three downsamplings: 64 -> 8
    classifier = linear(flat, cfg.hidden) + linear(cfg.hidden, cfg.num_classes)
    if variant.fuse_at == "input":
        fused = variant.fusion.width * IN_CHANNELS
        total = conv(fused, c0, True) + conv(c0, c1, True) + conv(c1, c2, True)
        return total + conv(c2, c2, False) + classifier
    encoders = variant.fusion.inputs
    encoder = conv(IN_CHANNELS, c0, True) + conv(c0, c1, True)
    if variant.fuse_at == "embedding":
        encoder += conv(c1, c2, True) + linear(flat, cfg.hidden) + linear(cfg.hidden, cfg.hidden)
        head = linear(variant.fusion.width * cfg.hidden, cfg.hidden)
        head += linear(cfg.hidden, cfg.num_classes)
        return encoders * encoder + head
    fused = variant.fusion.width * c1
    return encoders * encoder + conv(fused, c2, True) + conv(c2, c2, False) + classifier
