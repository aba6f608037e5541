"""The ablation the seed could not run: CILP with the seed's similarity vs CLIP's."""

from tune_cilp.cilp.space import CilpSpace

SPACE = CilpSpace(
    name="cilp-similarity",
    description=(
        "CILP chain with similarity=seed ((cos+1)/2, no temperature) vs similarity=clip "
        "(learned logit scale), each on the seed notebook's protocol."
    ),
    stages={"contrastive": {}, "projector": {}, "classifier": {}},
    compare=("similarity", ("seed", "clip")),
)
