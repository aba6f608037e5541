"""`python -m analysis EXPERIMENT_PATH`: print the comparison table (a fusion experiment's, or a
CILP chain's); optionally write its numbers as CSV and JSON and its curves as PNG, and each
variant's best-model predictions (a CILP chain's: its RGB-only classifier's) onto a FiftyOne
dataset."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from argparse import Namespace
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.table import (
    ComparisonTable,
    check_format,
    experiment_table,
    format_table,
    write_csv,
    write_json,
)
from tune_cilp.core.errors import EXIT_CODES, ArgumentParser, UserError, epilog, run_cli
from tune_cilp.core.path_guard import can_write_in, check_output_file, check_place
from tune_cilp.experiment.identity import read_meta
from tune_cilp.results import Experiment, load_experiment

if TYPE_CHECKING:
    from analysis.cilp_table import CilpTable


ENVIRONMENT = {
    "FIFTYONE_DATABASE_DIR": "FiftyOne's database, for --to-fiftyone",
    "TUNE_CILP_EXPERIMENT": "the experiment notebooks/analysis.ipynb reads (not this command)",
    "MPLCONFIGDIR": "matplotlib's config folder, for --plots (a private temporary one where "
    "~/.config/matplotlib cannot be written)",
}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m analysis", description=__doc__, epilog=epilog(EXIT_CODES, ENVIRONMENT)
    )
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
        "--plots", metavar="DIR", help="write validation curves (fusion: and final metrics) as PNG"
    )
    p.add_argument(
        "--to-fiftyone",
        action="store_true",
        help="write each variant's best-model predictions onto the experiment's FiftyOne dataset "
        "(for a CILP experiment, each chain's RGB-only classifier's)",
    )
    p.add_argument(
        "--fiftyone-dataset",
        metavar="DATASET",
        default=None,
        help="with --to-fiftyone: write onto DATASET instead, ingesting the experiment's data "
        "there if it is not a FiftyOne dataset (default: the experiment's own dataset)",
    )
    return p


@dataclass
class Outputs:
    """What one kind of experiment prints and how it writes each optional file."""

    text: str  # the table, its notes and verdict
    has_results: bool  # False: nothing to write (the text says why)
    csv: Callable[[str], None]
    json: Callable[[str], None]
    plots: Callable[[str], list[str]]  # the paths written


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fiftyone_dataset is not None and not args.to_fiftyone:
        raise UserError("--fiftyone-dataset: only with --to-fiftyone")
    check_format(args.format)  # before the (slower) load, so a typo fails at once
    check_outputs(args)
    from analysis.cilp_table import is_cilp_experiment

    if is_cilp_experiment(args.experiment):  # a chain of stage experiments: its own table
        from analysis.cilp_table import cilp_table

        table = cilp_table(args.experiment)
        write_outputs(args, cilp_outputs(table, args.format))
        if args.to_fiftyone:
            from analysis.review import to_fiftyone

            chains = table.classifier.variants if table.classifier is not None else []
            source = Experiment(table.path, [], read_meta(table.path))
            to_fiftyone(source, chains, args.fiftyone_dataset)
        return 0
    experiment = load_experiment(args.experiment)
    table = experiment_table(experiment)
    write_outputs(args, fusion_outputs(experiment, table, args.format))
    if args.to_fiftyone:
        from analysis.review import to_fiftyone

        to_fiftyone(experiment, table.variants, args.fiftyone_dataset)
    return 0


def fusion_outputs(experiment: Experiment, table: ComparisonTable, fmt: str) -> Outputs:
    """A fusion (or any plain Ray Tune) experiment's table and files: one column per variant."""

    def plots(folder: str) -> list[str]:
        from analysis.plots import write_plots  # here: matplotlib only when plots are asked for

        return write_plots(table, folder)

    return Outputs(
        format_table(table, fmt),
        bool(table.variants),
        lambda path: write_csv(table, path),
        lambda path: write_json(table, path, experiment.path),
        plots,
    )


def cilp_outputs(table: CilpTable, fmt: str) -> Outputs:
    """A CILP experiment's table and files: one column per chain, a curve plot per stage."""
    from analysis.cilp_table import (
        format_cilp_table,
        write_cilp_csv,
        write_cilp_json,
        write_cilp_plots,
    )

    return Outputs(
        format_cilp_table(table, fmt),
        bool(table.chains),
        lambda path: write_cilp_csv(table, path),
        lambda path: write_cilp_json(table, path),
        lambda folder: write_cilp_plots(table, folder),
    )


def check_outputs(args: Namespace) -> None:
    """The files and folder asked for, checked before anything is loaded, printed or written:
    a place that cannot take them is refused in one line (a full disk: exit 1)."""
    for option, path in (("--csv", args.csv), ("--json", args.json)):
        if path:
            check_output_file(path, option)
    if args.plots:
        check_place(args.plots, "--plots")


def private_matplotlib_config() -> None:
    """Where matplotlib's config folder (~/.config/matplotlib) cannot be written, give it a
    private temporary one, which it would make itself after two lines of warning on stderr."""
    if os.environ.get("MPLCONFIGDIR") or can_write_in(Path.home() / ".config" / "matplotlib"):
        return
    folder = tempfile.mkdtemp(prefix="matplotlib-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = folder


def write_outputs(args: Namespace, out: Outputs) -> None:
    """Print the table, then write what --csv, --json and --plots ask for (the same for every
    kind of experiment), a "wrote PATH" line per file."""
    print(out.text)
    if not out.has_results:  # the text already says there is nothing yet
        return
    if args.csv:
        out.csv(args.csv)
        print(f"wrote {args.csv}")
    if args.json:
        out.json(args.json)
        print(f"wrote {args.json}")
    if args.plots:
        private_matplotlib_config()
        for path in out.plots(args.plots):
            print(f"wrote {path}")


def cli() -> None:
    """The console script's entry point (pyproject.toml), the same as ``python -m``."""
    run_cli(main)


if __name__ == "__main__":
    cli()
