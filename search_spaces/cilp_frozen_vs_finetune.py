"""The question the seed could not ask: does the contrastive representation carry the class by
itself (frozen embedder and projector, a head on top), or does it take fine-tuning (the seed's
protocol)? Both classifiers start from the same contrastive and projector trials per seed."""

from tune_cilp.cilp.cilp_space import CilpSpace, Compare

SPACE = CilpSpace(
    name="cilp-frozen-vs-finetune",
    description=(
        "CILP on the seed notebook's protocol, the classifier stage both ways on the same "
        "contrastive and projector trials (one per seed): finetune=False trains a head on the "
        "frozen projected embeddings, finetune=True (the seed's) trains embedder, projector and "
        "head; plus the rgb single-modality baseline."
    ),
    stages={"contrastive": {}, "projector": {}, "classifier": {}},
    compare=Compare("classifier", "finetune", (False, True)),
    baselines=("rgb",),
)
