"""The contrastive objective: B x B similarity logits, cross-entropy against the diagonal in
both directions, and retrieval accuracy over a whole split.

Similarities (docs/CILP.md):
    clip  cosine x exp(t), t learned, initialised at log(1 / 0.07) and clamped so that the scale
          stays <= 100 (CLIP's choices);
    seed  (cosine + 1) / 2, no temperature (the seed notebook's). Its loss cannot go below
          seed_loss_floor(B): about 2.97 for batches of 32 (chance: ln 32 = 3.47).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SIMILARITIES: tuple[str, ...] = ("clip", "seed")
CLIP_INIT = math.log(1 / 0.07)
CLIP_MAX_SCALE = 100.0
SEED_SCALE = 0.5  # (cos + 1) / 2 = 0.5 cos + 0.5, and a softmax ignores the constant


class LogitScale(nn.Module):
    """CLIP's learned temperature: the logits are cosine x exp(log_scale)."""

    def __init__(self, init: float = CLIP_INIT) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep the scale in (0, 100] (CLIP clamps the parameter after each step)."""
        self.log_scale.clamp_(max=math.log(CLIP_MAX_SCALE))


def similarity_logits(
    rgb: torch.Tensor, lidar: torch.Tensor, similarity: str, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, B) logits between L2-normalised embeddings: row i = image i against every LiDAR."""
    cosine = rgb.float() @ lidar.float().T
    if similarity == "seed":
        return (cosine + 1) / 2
    return cosine * scale


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the image->LiDAR and LiDAR->image cross-entropies against the diagonal."""
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def retrieval_top1(rgb: torch.Tensor, lidar: torch.Tensor) -> tuple[float, float]:
    """Top-1 retrieval accuracy (RGB -> LiDAR, LiDAR -> RGB) among all N pairs given: the share
    of scenes whose own partner is the nearest by cosine. Both similarities rank alike."""
    cosine = rgb.float() @ lidar.float().T
    target = torch.arange(len(cosine), device=cosine.device)
    r2l = (cosine.argmax(dim=1) == target).float().mean().item()
    l2r = (cosine.argmax(dim=0) == target).float().mean().item()
    return r2l, l2r


def seed_loss_floor(batch: int) -> float:
    """The lowest loss the seed similarity allows for a batch of ``batch`` pairs.

    Per row the loss is log(1 + sum_j exp((c_ij - c_ii) / 2)) with cosines c; by Jensen it is at
    least log(1 + (B - 1) exp(m / 2)) with m the mean off-diagonal gap, and m >= -B / (B - 1)
    (equality: both modalities on the same regular simplex, possible when emb_dim >= B - 1).
    """
    if batch < 2:
        return 0.0
    return math.log1p((batch - 1) * math.exp(-batch / (2 * (batch - 1))))
