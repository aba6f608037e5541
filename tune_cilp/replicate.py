"""``--replicate EXPERIMENT``: the best configurations of a finished (or partial) experiment,
re-run across seeds as a new experiment.

A search (``--space hpo``) finds a good configuration on one seed; whether it is really better
takes several seeds. This picks, from the source experiment's finished trials, the best
configuration (by min validation loss) of each fusion variant × downsampling, or the top k
overall, and turns them into a search space whose trials are exactly those configurations ×
the seeds (Tune's BasicVariantGenerator with preset points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ray import tune
from ray.tune.search import BasicVariantGenerator

from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import SELECT
from tune_cilp.experiment.request import RunRequest
from tune_cilp.experiment.run_settings import run_epochs, with_run_settings
from tune_cilp.experiment.space import SearchSpace
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.variants import variant_name
from tune_cilp.results import kept_row, load_experiment

NAME_KEYS = ("variant", "downsample")
SPACE_NAME = "replicate"


@dataclass(frozen=True)
class Pick:
    """A configuration chosen from the source: its trial and its min validation loss there."""

    trial_id: str
    config: dict[str, Any]  # TrainConfig fields without the seed and the test fraction
    val_loss: float


def pick_configs(experiment_path: str, top_k: int | None = None) -> list[Pick]:
    """The best finished trial's configuration per variant × downsampling (or the top_k best
    overall), best first; UserError when the source has nothing to replicate."""
    experiment = load_experiment(experiment_path)
    finished = [
        (t, row)
        for t in experiment.trials
        if t.status == "TERMINATED" and (row := kept_row(t.history)) is not None
    ]
    if not finished:
        raise UserError(f"--replicate {experiment_path}: no finished trial to replicate")
    missing = [k for k in NAME_KEYS if any(k not in t.config for t, _ in finished)]
    if missing:
        raise UserError(
            f"--replicate {experiment_path}: its trial configs have no {', '.join(missing)} "
            "(not a fusion experiment of python -m tune_cilp.run)"
        )
    ranked = sorted(finished, key=lambda tr: (float(tr[1][SELECT]), tr[0].trial_id))
    if top_k is None:
        best: dict[tuple, Any] = {}
        for t, row in ranked:
            best.setdefault(tuple(t.config[k] for k in NAME_KEYS), (t, row))
        ranked = list(best.values())
    picks, seen = [], set()
    for t, row in ranked:
        config = TrainConfig.from_dict(t.config).to_dict()  # complete, and still valid today
        config.pop("seed")
        config.pop("test_fraction", None)  # the replicate's own, like its seeds
        key = repr(sorted(config.items()))
        if key not in seen:
            seen.add(key)
            picks.append(Pick(t.trial_id, config, float(row[SELECT])))
    return picks[:top_k] if top_k is not None else picks


def replicate_space(
    source: str, picks: Sequence[Pick], seeds: Sequence[int], overrides: dict[str, Any]
) -> SearchSpace:
    """A search space whose trials are exactly the picks × seeds, with `overrides` (e.g. the
    run's --epochs, --precision) applied to every pick."""
    if len(seeds) < 2:
        raise UserError(
            "--replicate: needs --seeds with at least two seeds (e.g. --seeds 51,52,53)"
        )
    points = [{**p.config, **overrides, "seed": seed} for p in picks for seed in seeds]
    params: dict[str, Any] = {}
    for key in points[0]:
        values = []
        for point in points:
            if point[key] not in values:
                values.append(point[key])
        # A key that varies is a choice, so Tune takes each preset value as valid.
        params[key] = values[0] if len(values) == 1 else tune.choice(values)
    names = ", ".join(variant_name(p.config) for p in picks)
    return SearchSpace(
        name=SPACE_NAME,
        description=f"the best configurations of {source} ({names}) across seeds",
        param_space=params,
        num_samples=len(points),
        epochs=max(point["epochs"] for point in points),
        make_search_alg=lambda: BasicVariantGenerator(points_to_evaluate=[dict(p) for p in points]),
        grid_seeds=False,
    )


def replicated_space(request: RunRequest) -> tuple[SearchSpace, list[Pick]]:
    """--replicate: the source's best configurations x --seeds as a search space, and the picks
    (recorded in tune_cilp.json: where the configurations came from)."""
    assert request.replicate is not None and request.seeds is not None
    picks = pick_configs(request.replicate, request.top_k)
    overrides = with_run_settings({}, epochs=run_epochs(request, None), precision=request.precision)
    if request.test_fraction is not None:
        overrides["test_fraction"] = request.test_fraction
    return replicate_space(request.replicate, picks, request.seeds, overrides), picks
