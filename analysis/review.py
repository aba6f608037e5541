"""FiftyOne review: each variant's best model predicts every scene of the experiment's data, and
the predictions land on the dataset's samples as one field per variant (`pred_<variant>`); for
a CILP experiment the variants are its chains and the model their RGB-only classifier."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from analysis.stats import VariantSummary
from tune_cilp.core.errors import UserError
from tune_cilp.core.fiftyone_env import import_fiftyone
from tune_cilp.experiment.identity import META_FILE
from tune_cilp.results import Experiment


def field_name(variant_name: str) -> str:
    """FiftyOne field of a variant's predictions.

    "concat-maxpool lr=0.001" -> "pred_concat_maxpool_lr_0_001".
    """
    return "pred_" + re.sub(r"[^0-9a-zA-Z]+", "_", variant_name).strip("_").lower()


def dataset_name(experiment_name: str) -> str:
    """A FiftyOne dataset name derived from the experiment directory name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment_name).lstrip(".-") or "experiment"


def prepare_dataset(experiment: Experiment, name: str | None = None) -> str:
    """The FiftyOne dataset holding the experiment's scenes, ingested first if needed.

    The experiment's source (tune_cilp.json "dataset") is used as is when it is a FiftyOne dataset
    and no other name is asked for; a raw directory, an export or the default synthetic set
    (synthetic:NAME) is ingested into `name` (default: named after the experiment) unless it
    exists.
    """
    from tune_cilp.data import (
        detect_source,
        ensure_default_raw,
        import_export,
        ingest_raw,
        synthetic_set,
    )

    fo = import_fiftyone()
    if experiment.meta is None:
        raise UserError(
            f"{experiment.path}/{META_FILE}: missing, so the experiment's data is unknown "
            "(was it made by python -m tune_cilp.run?)"
        )
    source = experiment.meta.dataset
    data_dir = experiment.meta.data_dir
    kind = detect_source(source)
    if kind == "fiftyone" and name in (None, source):
        return source
    name = name or dataset_name(experiment.name)
    if fo.dataset_exists(name):
        return name  # ingested by an earlier review (or the user's own copy of the data)
    print(f"ingesting {source} into FiftyOne dataset {name!r}")
    if kind == "fiftyone":
        fo.load_dataset(source).clone(name, persistent=True)
    elif kind == "export":
        import_export(source, name)
    else:
        raw = source if kind == "raw" else ensure_default_raw(data_dir, synthetic_set(source))
        ingest_raw(raw, name, data_dir=data_dir, progress=False)
    return name


def load_best_model(variant: VariantSummary):  # -> torch.nn.Module
    """The best trial's kept weights (state.pt "best_model") in a freshly built model: a fusion
    model, or for a CILP classifier-stage trial the RGB-only classifier."""
    from tune_cilp.cilp.stage_trainers import load_stage_checkpoint, rgb_classifier
    from tune_cilp.cilp.stages import classifier_stage
    from tune_cilp.core.checkpoint import STATE_FILE, load_checkpoint
    from tune_cilp.fusion.fusion_config import TrainConfig
    from tune_cilp.fusion.fusion_model import build_model

    checkpoint = variant.best.checkpoint
    if checkpoint is None:
        raise UserError(f"{variant.name}: trial {variant.best.trial_id} has no checkpoint")
    with checkpoint.as_directory() as ckpt_dir:
        path = Path(ckpt_dir) / STATE_FILE
        state = load_checkpoint(path)
        stage = classifier_stage()
        if isinstance(state.get("config"), dict) and "stage" in state["config"] and stage:
            return rgb_classifier(load_stage_checkpoint(str(path), stage.name))
    cfg = TrainConfig.from_dict(state["config"])
    model = build_model(cfg.model_config)
    model.load_state_dict(state["best_model"])
    return model.eval()


def to_fiftyone(
    experiment: Experiment, variants: Sequence[VariantSummary], name: str | None = None
) -> dict[str, int]:
    """Write every variant's best-model predictions onto the dataset; print how to review them.

    Returns {field: number of misclassified scenes}.
    """
    from tune_cilp.data import add_predictions, load_arrays
    from tune_cilp.fusion.fusion_trainer import predict_proba

    if not variants:
        raise UserError("--to-fiftyone: no trial has reported results yet")
    # Every checkpoint is read before anything is written: a bad one leaves no dataset behind.
    models = {v.name: load_best_model(v) for v in variants}
    name = prepare_dataset(experiment, name)
    data = load_arrays(name)  # ids are the dataset's own scene keys
    wrong = {}
    for v in variants:
        p = predict_proba(models[v.name], data.rgb, data.xyza)
        predicted = (p >= 0.5).astype(np.int64)
        field = field_name(v.name)
        add_predictions(name, field, data.ids, predicted, np.where(predicted == 1, p, 1 - p))
        wrong[field] = int(np.sum(predicted != data.labels))
        print(
            f"{field}: {v.name} (best trial {v.best.trial_id}, epoch {v.best.best_epoch}) "
            f"misclassifies {wrong[field]} of {len(data)} scenes"
        )
    first = next(iter(wrong))
    print(
        f"\nReview in the FiftyOne App:\n"
        f"  python -c \"import fiftyone as fo; fo.launch_app(fo.load_dataset('{name}')).wait()\"\n"
        f"Misclassified samples (in Python, or paste the match stage into the App's view bar):\n"
        f"  from fiftyone import ViewField as F\n"
        f"  view = fo.load_dataset('{name}').match(F('{first}.label') != F('ground_truth.label'))"
    )
    return wrong
