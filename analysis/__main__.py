"""`python -m analysis EXPERIMENT_PATH`: print the comparison table; optionally write CSV, JSON,
plots, and each variant's best-model predictions onto a FiftyOne dataset."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.table import check_format, experiment_table, format_table, write_csv, write_json
from tune_cilp.core.errors import ArgumentParser, run_cli
from tune_cilp.results import load_experiment


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m analysis", description=__doc__)
    p.add_argument(
        "experiment", help="experiment directory or storage URI (e.g. ~/ray_results/seed-ablation)"
    )
    p.add_argument(
        "--format", default="grid", help="tabulate table format: grid, github, latex, ..."
    )
    p.add_argument("--csv", metavar="FILE", help="write the table's numbers as CSV")
    p.add_argument(
        "--json", metavar="FILE", help="write the table, per-trial results and the test as JSON"
    )
    p.add_argument(
        "--plots", metavar="DIR", help="write validation curves and final metrics as PNG"
    )
    p.add_argument(
        "--to-fiftyone",
        nargs="?",
        const="",
        metavar="DATASET",
        help="write each variant's best-model predictions onto the experiment's FiftyOne dataset "
        "(or onto DATASET, ingesting the experiment's data there if it is not a FiftyOne dataset)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_format(args.format)  # before the (slower) load, so a typo fails at once
    from analysis.cilp_table import cilp_report, is_cilp_experiment

    if is_cilp_experiment(args.experiment):  # a chain of stage experiments: its own table
        print(cilp_report(args.experiment, args.format))
        return 0
    experiment = load_experiment(args.experiment)
    table = experiment_table(experiment)
    print(format_table(table, args.format))
    if args.csv and table.variants:
        write_csv(table, args.csv)
        print(f"wrote {args.csv}")
    if args.json and table.variants:
        write_json(table, args.json, experiment.path)
        print(f"wrote {args.json}")
    if args.plots and table.variants:
        from analysis.plots import write_plots

        for path in write_plots(table.variants, args.plots):
            print(f"wrote {path}")
    if args.to_fiftyone is not None:
        from analysis.review import to_fiftyone

        to_fiftyone(experiment, table.variants, args.to_fiftyone or None)
    return 0


if __name__ == "__main__":
    run_cli(main)
