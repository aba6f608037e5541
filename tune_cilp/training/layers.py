"""Layers shared by the fusion networks (tune_cilp.fusion.fusion_model) and the CILP networks
(tune_cilp.cilp.cilp_model)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(c_in: int, c_out: int, downsample: str | None) -> list[nn.Module]:
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
    """Scales each row (dim 1) to unit L2 norm: embeddings compared by cosine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)
