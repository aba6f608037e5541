"""Is the length of NVIDIA's fine-tune phase what makes its protocol collapse on the seed's data?
NVIDIA's protocol with the fine-tune phase 50 epochs (the seed protocol's classifier length)
instead of 5, without and with class-balanced batches, on the same upstream trials per seed
(docs/CILP.md, "Why NVIDIA's protocol collapses here")."""

from search_spaces.cilp_nvidia import SPACE as NVIDIA
from tune_cilp.cilp.cilp_space import CilpSpace, Compare

SPACE = CilpSpace(
    name="cilp-nvidia-long-finetune",
    description=(
        "cilp-nvidia with a 50-epoch fine-tune phase (NVIDIA's: 5), class_balance none vs "
        "sampler, both on the same contrastive and projector trials per seed."
    ),
    stages={**NVIDIA.stages, "classifier": {**NVIDIA.stages["classifier"], "epochs": 50}},
    compare=Compare("classifier", "class_balance", ("none", "sampler")),
)
