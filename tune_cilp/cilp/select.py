"""Which trial of a stage each chain continues from: per chain (compared value and seed), the
trial with the lowest validation loss. Shared by the driver and the analysis, so the table
shows exactly the trials the chain used."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tune_cilp.cilp.cilp_space import Compare
from tune_cilp.cilp.stages import get_stage
from tune_cilp.core.checkpoint import STATE_FILE
from tune_cilp.core.errors import UserError
from tune_cilp.core.json_shape import check_fields, json_object
from tune_cilp.core.stored import read_bytes, write_bytes

STAGE_FILE = "stage.json"  # in a stage's directory, written once the stage has finished


@dataclass(frozen=True)
class Link:
    """One chain at one stage: its label (compared value), seed and chosen trial."""

    label: str
    seed: int
    trial_id: str
    trial_dir: str  # the trial directory's name (what downstream configs' paths contain)
    # The chosen trial's state.pt (holds its best weights), relative to the experiment (absolute
    # in experiments made before that): tune_cilp.core.checkpoint.in_experiment finds it.
    checkpoint: str
    val_loss: float
    upstream_dir: str = ""  # the trial directory of the upstream link it continues ("": first)


def min_val_loss(history: Sequence[dict[str, Any]]) -> float:
    """The validation loss of the weights the trial kept: its last row's best_val_loss (the
    loop may keep only some epochs, e.g. mode nvidia's fine-tune phase), else the lowest."""
    kept = history[-1].get("best_val_loss", math.nan) if history else math.nan
    if math.isfinite(kept):
        return kept
    values = [r["val_loss"] for r in history if math.isfinite(r.get("val_loss", math.nan))]
    return min(values, default=math.nan)


def chain_of(
    stage: str,
    config: dict[str, Any],
    compare: Compare | None,
    default_label: str,
    upstream: dict[str, Link],
) -> tuple[str, int] | None:
    """(label, seed) of the chain a trial belongs to; None if its upstream is not a chosen
    trial of the stage before. upstream: the previous stage's links by trial directory name.
    The label is the compared value from the compared stage on, `default_label` before it."""
    here = compare.label(config[compare.key]) if compare and compare.stage == stage else None
    if get_stage(stage).upstream_key is None:
        return here or default_label, int(config["seed"])
    link = upstream.get(_upstream_dir(stage, config))
    return None if link is None else (here or link.label, link.seed)


def select(
    stage: str,
    trials: Sequence[Any],
    compare: Compare | None,
    default_label: str,
    upstream: dict[str, Link],
) -> list[Link]:
    """The best trial per chain among ``trials`` (tune_cilp.results.TrialRecord objects with
    a checkpoint), sorted by label and seed."""
    best: dict[tuple[str, int], Link] = {}
    for t in trials:
        chain = chain_of(stage, t.config, compare, default_label, upstream)
        loss = min_val_loss(t.history)
        if chain is None or t.checkpoint is None or math.isnan(loss):
            continue
        if chain not in best or loss < best[chain].val_loss:
            trial_dir = os.path.basename(t.path.rstrip("/"))
            checkpoint = os.path.basename(t.checkpoint.path.rstrip("/"))
            path = f"{stage}/{trial_dir}/{checkpoint}/{STATE_FILE}"
            parent = _upstream_dir(stage, t.config)
            best[chain] = Link(*chain, t.trial_id, trial_dir, path, loss, parent)
    return [best[k] for k in sorted(best)]


def _upstream_dir(stage: str, config: dict[str, Any]) -> str:
    key = get_stage(stage).upstream_key
    parents = Path(str(config.get(key, ""))).parents if key else []
    return parents[1].name if len(parents) > 1 else ""


def _link(record: Any) -> Link:
    """A recorded link, its fields checked for their types (ValueError, TypeError otherwise)."""
    if not isinstance(record, dict):
        raise ValueError(f"a link is {type(record).__name__}, not an object")
    check_fields(Link, record)  # an unknown field is a KeyError: caught as unreadable too
    return Link(**record)


def by_trial_dir(links: Sequence[Link]) -> dict[str, Link]:
    return {link.trial_dir: link for link in links}


def read_stage(stage_dir: str) -> list[Link] | None:
    """The links a finished stage recorded; None if it has not finished. stage_dir: a local
    directory or a storage URI."""
    path = f"{stage_dir.rstrip('/')}/{STAGE_FILE}"
    try:
        data = read_bytes(path)
        if data is None:
            return None
        return [_link(link) for link in json_object(data)["links"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: unreadable stage record ({exc})") from None


def write_stage(stage_dir: str, stage: str, links: Sequence[Link], finished_at: str) -> None:
    """Record a finished stage and the trial each chain continues from (whole or not at all,
    on a local directory or a storage URI)."""
    record = {"stage": stage, "finished_at": finished_at, "links": [asdict(k) for k in links]}
    write_bytes(f"{stage_dir.rstrip('/')}/{STAGE_FILE}", json.dumps(record, indent=2).encode())
