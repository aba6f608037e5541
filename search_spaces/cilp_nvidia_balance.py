"""NVIDIA's protocol with the class balance the seed's 93 %-cubes data needs: the classifier
stage three ways (none, the protocol's; pos_weight; sampler) on the same contrastive and
projector trials per seed (docs/CILP.md)."""

from search_spaces.cilp_nvidia import SPACE as NVIDIA
from tune_cilp.cilp.cilp_space import CilpSpace, Compare

SPACE = CilpSpace(
    name="cilp-nvidia-balance",
    description=(
        "cilp-nvidia with the classifier stage's class_balance none vs pos_weight vs sampler, "
        "all three on the same contrastive and projector trials per seed."
    ),
    stages=NVIDIA.stages,
    compare=Compare("classifier", "class_balance", ("none", "pos_weight", "sampler")),
)
