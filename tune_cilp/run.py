"""``python -m tune_cilp.run``: run a named search space as a Ray Tune experiment.

The command parses and checks its arguments once into a frozen RunRequest (one-line error,
exit 2), checks that every option applies to the chosen space, dispatches to the fusion
driver (a space, or --replicate) or the CILP chain, and prints the outcome's table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from tune_cilp.cilp.cilp_space import CilpSpace
from tune_cilp.core.errors import UserError, run_cli
from tune_cilp.data import DEFAULT_SEED
from tune_cilp.experiment.driver import Outcome
from tune_cilp.experiment.race_search import ALPHA, MAX_SEEDS, RacePlan
from tune_cilp.experiment.ray_session import check_ray_can_start
from tune_cilp.experiment.request import RunRequest
from tune_cilp.experiment.space import SearchSpace
from tune_cilp.fusion.fusion_driver import run_fusion, run_params, train_fusion, variant_configs
from tune_cilp.replicate import replicated_space
from tune_cilp.run_args import build_parser, parse_request
from tune_cilp.spaces import get_space, list_spaces


def check_applies(request: RunRequest, space: SearchSpace) -> None:
    """The one check that every option given means something for `space`: UserError naming
    the first one that does not."""
    cilp = isinstance(space, CilpSpace)
    if request.lidar_cnn is not None and not cilp:
        raise UserError(f"--lidar-cnn: only for CILP spaces, not {space.name!r}")
    if request.test_fraction is not None and cilp:
        # The chain chooses each stage's best trial on validation and reports its classifier
        # there; it has no test split to hand on.
        raise UserError(f"--test-fraction: only for fusion spaces, not {space.name!r}")
    if request.race and cilp:
        # A chain's seed is a run of every stage in turn, each its own Tune experiment; a look
        # needs whole chains, so a race of chains is a race of experiments, not of trials.
        raise UserError(
            f"--race: not for CILP spaces ({space.name!r}): a chain's seed runs its stages as "
            "separate experiments in turn, which one Tune search cannot race; use --seeds"
        )
    if request.pack is not None and cilp:
        # A chain's stages are separate experiments, each trial one seed's stage; packing them
        # would need the packed trainer of every stage (only the fusion Trainer has one).
        raise UserError(f"--pack: only for fusion spaces, not {space.name!r}")
    if request.race and space.samples:
        raise UserError(
            f"--race: space {space.name!r} samples its configurations; race fixed variants "
            "(a grid space such as fusion or seed-ablation)"
        )
    if (request.num_samples or 1) > 1 and not space.samples:
        # Tune would repeat the same configuration with the same seed: copies, not replicates.
        raise UserError(
            f"--num-samples {request.num_samples}: space {space.name!r} samples nothing, so "
            "every sample would be the same trial; for replicates use --seeds (e.g. "
            "--seeds 51,52,53)"
        )


def race_plan(request: RunRequest, space: SearchSpace) -> RacePlan:
    """--race's plan for a fusion grid space (check_applies refuses the others): its grid's
    variants, named as the tables name them, raced on the space's metric (UserError for fewer
    than two variants or bad race settings)."""
    from analysis.race import RaceDesign
    from analysis.race_report import RaceJudge, design_record
    from analysis.stats import variant_names

    found = variant_configs(run_params(request, space))
    names = variant_names([config for _, config in found])
    design = RaceDesign(
        tuple(names),
        max_seeds=MAX_SEEDS if request.max_seeds is None else request.max_seeds,
        alpha=ALPHA if request.alpha is None else request.alpha,
        margin=request.margin,
        metric=space.metric,
        first_seed=DEFAULT_SEED,
    )
    configs = {name: grid for name, (grid, _) in zip(names, found, strict=True)}
    return RacePlan(configs, RaceJudge(design), design_record(design, configs), design.n0)


def dispatch(request: RunRequest) -> Outcome:
    """Run the request's experiment with the driver its space needs; fusion trials (and a
    CILP chain's reference models) train with train_fusion."""
    if request.replicate is not None:
        space, picks = replicated_space(request)
        check_applies(request, space)
        recorded = [
            {"trial_id": p.trial_id, "val_loss": p.val_loss, "config": p.config} for p in picks
        ]
        return run_fusion(request, space, train_fusion, picks=recorded)
    space = get_space(request.space)
    check_applies(request, space)
    if request.race:
        return run_fusion(request, space, train_fusion, race=race_plan(request, space))
    if isinstance(space, CilpSpace):  # a chain of Tune experiments, one per stage
        # Here: the stage configs' checks import torch, which a fusion driver never needs.
        from tune_cilp.cilp.chain import run_chain

        return run_chain(request, space, train_fusion)
    return run_fusion(request, space, train_fusion)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) an experiment and print its table; returns the exit code."""
    started_at = time.time()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.list_spaces:
        for space in list_spaces():
            print(f"{space.name:15s} {space.description}")
        return 0
    request = parse_request(args, argv, started_at)
    check_ray_can_start(request.address)  # before the data loads: its places fail in seconds
    outcome = dispatch(request)
    if outcome.finished_before or outcome.complete:
        from analysis import report  # after the run: the analysis is not needed before it

        if outcome.finished_before:
            finished = f"finished ({outcome.finished_before})"
            print(f"experiment {outcome.experiment} is {finished}; its table:")
        print(report(outcome.experiment, fmt="grid"))
        if not outcome.finished_before:
            print(f"experiment: {outcome.experiment}")
    return outcome.exit_code


def cli() -> None:
    """The console script's entry point (pyproject.toml), the same as ``python -m``."""
    run_cli(main)


if __name__ == "__main__":
    cli()
