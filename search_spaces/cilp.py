"""CILP on the seed notebook's protocol, with the RGB-only baseline for reference."""

from tune_cilp.cilp.space import CilpSpace

SPACE = CilpSpace(
    name="cilp",
    description=(
        "CILP chain contrastive -> projector -> RGB-only classifier on the seed notebook's "
        "protocol (each stage 50 epochs, Adam 1e-3, cosine to 1e-6, batch 32, seed 51; clip "
        "similarity), plus the rgb single-modality baseline."
    ),
    stages={"contrastive": {}, "projector": {}, "classifier": {}},
    baselines=("rgb",),
)
