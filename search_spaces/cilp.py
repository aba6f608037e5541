"""CILP as the seed notebook ran it, with the RGB-only baseline for reference.

The seed's classifier stage optimised Adam(rgb_2_lidar_classifier.parameters()): its freeze set
an attribute on the module, not the parameters' requires_grad, so the image embedder and the
projector trained with the head (docs/CILP.md, "The seed's protocol"). finetune=True is that.
"""

from tune_cilp.cilp.cilp_space import CilpSpace

SPACE = CilpSpace(
    name="cilp",
    description=(
        "CILP chain contrastive -> projector -> RGB-only classifier as the seed notebook ran it "
        "(each stage 50 epochs, Adam 1e-3, cosine to 1e-6, batch 32, seed 51; clip similarity; "
        "the classifier trains image embedder, projector and head end to end from the CILP "
        "weights), plus the rgb single-modality baseline."
    ),
    stages={"contrastive": {}, "projector": {}, "classifier": {"finetune": True}},
    baselines=("rgb",),
)
