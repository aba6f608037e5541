"""A scratch fusion op, as a developer would add one (tests/fusion/test_scratch_op.py): "max",
the element-wise maximum of the two modalities' features, and a variant "maxfuse" that uses it.
A developer adds three entries, each one line, in two files:

    tune_cilp/fusion/variants.py      OPS["max"] = Op()  and  VARIANTS["maxfuse"] = Variant(...)
    tune_cilp/fusion/fusion_model.py  FUSE["max"] = torch.maximum

register() makes those edits in the process that calls it.
"""

from __future__ import annotations

import torch

from tune_cilp.fusion import fusion_model, variants

OP = "max"
VARIANT = "maxfuse"


def register() -> None:
    variants.OPS[OP] = variants.Op()
    variants.VARIANTS[VARIANT] = variants.Variant(fuse_at="features", op=OP)
    fusion_model.FUSE[OP] = torch.maximum


def unregister() -> None:
    del variants.VARIANTS[VARIANT], variants.OPS[OP], fusion_model.FUSE[OP]
