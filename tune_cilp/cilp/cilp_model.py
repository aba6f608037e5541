"""The CILP networks: per-modality embedders, the projector, heads, and NVIDIA's LiDAR CNN.

    embedder   conv in->50 v, 50->100 v, 100->200 v, 200->200 v (-> 200x4x4), flatten,
               linear 3200->100, ReLU, linear 100->emb, L2-normalise
    projector  linear emb->1000, ReLU, 1000->500, ReLU, 500->out
    head       linear in->100, ReLU, 100->1
    LidarCNN   NVIDIA's frozen LiDAR classifier ("Classifier(1)" on 1-channel depth): the
               embedder's four conv blocks + flatten (3,200-d) as ``embedder``, a head
               3200->100->1 as ``classifier``

"v" downsamples as in tune_cilp.training.layers.conv_block (MaxPool2d(2) or stride 2). Parameter
counts: embedder 927,650 for 4 input channels and emb 200 (either downsampling), 927,200 for 1
channel; projector 801,700 for 200->200; head 20,201 on 200-d inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from tune_cilp.core.errors import UserError
from tune_cilp.data.constants import IMAGE_SIZE
from tune_cilp.fusion.variants import IN_CHANNELS
from tune_cilp.training.layers import L2Normalize, conv_block

WIDTHS = (50, 100, 200, 200)
FLAT = WIDTHS[-1] * (IMAGE_SIZE // 16) ** 2  # four downsamplings: 64 -> 4; 3,200
HIDDEN = 100
PROJECTOR_HIDDEN = (1000, 500)
# LiDAR input of the embedders: the 4-channel XYZA tensor (the seed's) or 1-channel depth
# (NVIDIA's assessment), the range of each beam; a miss holds 50 (the maximum range) in both.
LIDAR_INPUTS: dict[str, int] = {"xyza": IN_CHANNELS, "depth": 1}


def lidar_input(xyza: torch.Tensor, kind: str) -> torch.Tensor:
    """The embedder input for ``kind``: xyza as it is, or depth = |xyz| (B, 1, H, W).

    Exact up to rounding: x, y, z are d times a unit vector (so x² + y² + z² = d²), and a beam
    without a return has d = 50 (tune_cilp.data.xyza.MAX_RANGE).
    """
    if kind == "xyza":
        return xyza
    return torch.linalg.vector_norm(xyza[:, :3], dim=1, keepdim=True)


def conv_blocks(in_channels: int, downsample: str) -> list[nn.Module]:
    """The four conv blocks shared by the embedder and the LiDAR CNN, then flatten."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip((in_channels, *WIDTHS[:-1]), WIDTHS, strict=True):
        layers += conv_block(c_in, c_out, downsample)
    return [*layers, nn.Flatten()]


def embedder(in_channels: int, emb_dim: int, downsample: str = "maxpool") -> nn.Sequential:
    """An L2-normalised ``emb_dim`` embedding of one modality's (B, in_channels, 64, 64) input."""
    return nn.Sequential(
        *conv_blocks(in_channels, downsample),
        nn.Linear(FLAT, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, emb_dim),
        L2Normalize(),
    )


def projector(in_dim: int, out_dim: int) -> nn.Sequential:
    """The MLP mapping image embeddings onto the LiDAR embedding space."""
    h1, h2 = PROJECTOR_HIDDEN
    return nn.Sequential(
        nn.Linear(in_dim, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, out_dim)
    )


def head(in_dim: int) -> nn.Sequential:
    """A binary classification head: one logit (spheres = 1)."""
    return nn.Sequential(nn.Linear(in_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))


class RgbClassifier(nn.Module):
    """The CILP chain's end product: image embedder -> projector -> head, one logit from the
    image alone. forward takes (rgb, xyza) like a fusion model and ignores the LiDAR input, so
    the same predictors and reviews serve both."""

    def __init__(self, rgb: nn.Module, projector: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.rgb, self.projector, self.head = rgb, projector, head

    def forward(self, rgb: torch.Tensor, xyza: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.projector(self.rgb(rgb)))


class LidarCNN(nn.Module):
    """NVIDIA's LiDAR classifier: ``embedder`` (depth -> 3,200-d) and ``classifier`` (a head)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedder = nn.Sequential(*conv_blocks(LIDAR_INPUTS["depth"], "maxpool"))
        self.classifier = head(FLAT)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedder(depth))


def check_lidar_cnn_state(state: dict, source: str) -> dict[str, torch.Tensor]:
    """``state`` if it is a LidarCNN state dict (every key, every shape); UserError otherwise."""
    expected = {k: tuple(v.shape) for k, v in LidarCNN().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if set(got) != set(state) or got != expected:
        missing = sorted(set(expected) - set(got))
        wrong = sorted(k for k in set(expected) & set(got) if got[k] != expected[k])
        extra = sorted(set(state) - set(expected))
        if wrong:
            k = wrong[0]
            what = f"{k} has shape {got[k]}, expected {expected[k]}"
        elif missing:
            what = f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        else:
            what = f"unexpected entries {', '.join(map(str, extra[:3]))}"
        raise UserError(
            f"{source}: not the state dict of NVIDIA's LiDAR CNN (Classifier(1) on 1-channel "
            f"depth, 3,200-d embeddings): {what}"
        )
    return state
