"""The ablation the seed could not run: CILP with the seed's similarity vs CLIP's."""

from tune_cilp.cilp.cilp_space import CilpSpace, Compare

SPACE = CilpSpace(
    name="cilp-similarity",
    description=(
        "CILP chain with similarity=seed ((cos+1)/2, no temperature) vs similarity=clip "
        "(learned logit scale), each on the seed notebook's protocol (as the cilp space)."
    ),
    stages={"contrastive": {}, "projector": {}, "classifier": {"finetune": True}},
    compare=Compare("contrastive", "similarity", ("seed", "clip")),
)
