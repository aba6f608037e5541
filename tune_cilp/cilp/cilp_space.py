"""A CILP search space: what each stage of the chain searches, what it compares, and which
single-modality / fusion models it trains as references (docs/CILP.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tune_cilp.experiment.space import SearchSpace, has_sampling


@dataclass(frozen=True)
class Compare:
    """One chain per value of one stage's config key. The stages before it run once per seed
    and every compared chain continues from them (e.g. frozen vs fine-tuned classifiers on the
    same embedders and projector); the stages after it run per chain."""

    stage: str
    key: str
    values: tuple[Any, ...]

    def label(self, value: Any) -> str:
        return f"{self.key}={value}"


@dataclass(frozen=True)
class CilpSpace(SearchSpace):
    """A chain contrastive -> projector -> classifier, each stage a Ray Tune experiment.

    stages:    per stage, a Tune param space over that stage's config fields (values, or
               grid_search / choice / ranges to tune: each stage keeps, per seed and compared
               value, its best trial by validation loss); left-out fields keep the defaults,
               the seed notebook's protocol.
    compare:   one chain per value of a stage's config key, side by side in the table (e.g.
               the contrastive similarity seed vs clip); None = one chain.
    baselines: model-registry variants (e.g. "rgb") trained per seed with the fusion Trainer
               on the seed protocol, shown as reference rows.
    """

    param_space: dict[str, Any] = field(default_factory=dict)  # unused: see stages
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    compare: Compare | None = None
    baselines: tuple[str, ...] = ()
    baseline_epochs: int = 50

    @property
    def samples(self) -> bool:
        """Whether any stage draws a value (see SearchSpace.samples)."""
        return any(has_sampling(params) for params in self.stages.values())

    def chain_labels(self) -> list[str]:
        """The names of the chains: "key=value" per compared value, else the space name."""
        if self.compare is None:
            return [self.name]
        return [self.compare.label(value) for value in self.compare.values]
