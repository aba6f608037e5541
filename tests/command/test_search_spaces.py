"""The search-space registry and the named spaces resolve to valid training configs."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import generate_variants

import search_spaces
from tune_cilp.core.errors import UserError
from tune_cilp.experiment.space import SearchSpace, check_param_space
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_driver import param_space
from tune_cilp.spaces import get_space, list_spaces


def _grid(
    space: SearchSpace,
    epochs: int = 2,
    seeds: list[int] | None = None,
    precision: str | None = None,
) -> list[dict]:
    params = param_space(space, epochs, seeds, precision)
    return [config for _, config in generate_variants(params)]


def test_registry_finds_every_space_module() -> None:
    # Whatever modules search_spaces/ holds: each one's SPACE is registered, once, by name.
    modules = [p.stem for p in Path(search_spaces.__file__).parent.glob("[!_]*.py")]
    declared = [importlib.import_module(f"search_spaces.{m}").SPACE.name for m in modules]
    names = [space.name for space in list_spaces()]
    assert len(modules) >= 2 and names == sorted(declared)
    assert all(get_space(name).name == name for name in names)
    assert all(space.description for space in list_spaces())


def test_unknown_space_lists_the_known_ones() -> None:
    known = ", ".join(space.name for space in list_spaces())
    with pytest.raises(UserError, match="unknown space 'nope'.*" + re.escape(known)):
        get_space("nope")


def test_seed_ablation_is_the_seed_protocol() -> None:
    configs = _grid(get_space("seed-ablation"))
    assert sorted(c["downsample"] for c in configs) == ["maxpool", "stride"]
    for config in configs:
        cfg = TrainConfig.from_dict(config)
        assert (cfg.variant, cfg.lr, cfg.batch_size, cfg.seed, cfg.epochs) == (
            "concat",
            1e-3,
            32,
            51,
            2,
        )


def test_fusion_covers_every_variant_and_downsampling() -> None:
    configs = _grid(get_space("fusion"))
    pairs = {(c["variant"], c["downsample"]) for c in configs}
    assert len(configs) == len(pairs) == 10
    assert {v for v, _ in pairs} == {"late", "concat", "add", "hadamard", "early"}  # registry
    for config in configs:
        TrainConfig.from_dict(config)


def test_seeds_repeat_every_configuration() -> None:
    configs = _grid(get_space("fusion"), seeds=[51, 52, 53])
    assert len(configs) == 30
    assert sorted({c["seed"] for c in configs}) == [51, 52, 53]


def test_hpo_uses_optuna_under_asha() -> None:
    space = get_space("hpo")
    assert isinstance(space.make_scheduler(8), ASHAScheduler)
    assert isinstance(space.make_search_alg(), OptunaSearch)
    assert (space.metric, space.mode) == ("val_loss", "min")
    with pytest.raises(UserError, match="--seeds"):
        param_space(space, 2, [51, 52])


def test_precision_option_reaches_every_configuration() -> None:
    configs = _grid(get_space("seed-ablation"), seeds=None, precision="fp32")
    assert [c["precision"] for c in configs] == ["fp32", "fp32"]
    default = param_space(get_space("seed-ablation"), 2, None)["precision"]
    assert default == TrainConfig().precision  # the protocol's default


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"variant": tune.grid_search(["concat", "nope"])}, "variant: expected one of"),
        ({"variant": tune.choice(["concat", "nope"])}, "variant: expected one of"),
        ({"lr": tune.uniform(-1.0, 1e-3)}, "lr: expected a finite number > 0"),
        ({"seed": tune.grid_search([51, -1])}, "seed: expected an integer in [0, 2**63)"),
        ({"epochs": 100_000}, "epochs: expected at most 10,000"),
        ({"momentum": 0.9}, "unknown training option(s) 'momentum'"),
    ],
)
def test_every_generated_configuration_is_checked_before_trials(params: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(f"space 'x': {message}")):
        check_param_space("x", params, TrainConfig.from_dict)
    check_param_space(
        "x", param_space(get_space("hpo"), 2, None), TrainConfig.from_dict
    )  # the real spaces pass
