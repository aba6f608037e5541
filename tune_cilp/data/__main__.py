"""Command line for the data steps: generate, ingest, export, inspect.

python -m tune_cilp.data generate --out DIR --scenes N --seed S [--sphere-fraction F]
python -m tune_cilp.data ingest RAW_DIR --name NAME [--subset F] [--split train=..,validation=..]
python -m tune_cilp.data export NAME --out DIR
python -m tune_cilp.data inspect [--dataset SOURCE]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tabulate import tabulate

from tune_cilp.core.errors import EXIT_CODES, ArgumentParser, UserError, epilog, run_cli
from tune_cilp.data.constants import DEFAULT_SEED
from tune_cilp.data.default_set import DATA_DIR, DEFAULT_SCENES, DEFAULT_SOURCE
from tune_cilp.data.fiftyone_data import export_dataset, ingest_raw
from tune_cilp.data.load import DATASET_FLAGS, detect_source, load_arrays
from tune_cilp.data.split import parse_split
from tune_cilp.data.synthetic import DEFAULT_SPHERE_FRACTION, generate_raw

ENVIRONMENT = {
    "TUNE_CILP_DATA_DIR": "cache of the built-in sets and ingested media (--data-dir)",
    "FIFTYONE_DATABASE_DIR": "FiftyOne's database (ingest, export, a dataset name)",
}


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m tune_cilp.data",
        description=__doc__.splitlines()[0],
        epilog=epilog(EXIT_CODES, ENVIRONMENT),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="render synthetic scenes into the raw layout")
    gen.add_argument("--out", required=True, help="new output directory")
    gen.add_argument("--scenes", type=int, default=DEFAULT_SCENES, help="scenes in all classes")
    gen.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the rendering")
    gen.add_argument(
        "--sphere-fraction",
        type=float,
        default=DEFAULT_SPHERE_FRACTION,
        help="share of spheres among the scenes",
    )

    ing = sub.add_parser("ingest", help="raw layout -> persistent FiftyOne grouped dataset")
    ing.add_argument("raw_dir", help="a raw-layout directory (cubes/, spheres/)")
    ing.add_argument("--name", required=True, help="FiftyOne dataset name")
    ing.add_argument("--subset", type=float, default=None, help="keep this fraction of scenes")
    ing.add_argument("--split", type=parse_split, default=None, help="train=0.75,validation=0.15")
    ing.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of subset and split")
    ing.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    ing.add_argument(
        "--data-dir",
        default=None,
        help=f"where the LiDAR media go (default: $TUNE_CILP_DATA_DIR, else {DATA_DIR})",
    )

    exp = sub.add_parser("export", help="FiftyOne dataset -> FiftyOneDataset export directory")
    exp.add_argument("name", help="the FiftyOne dataset")
    exp.add_argument("--out", required=True, help="new export directory")

    ins = sub.add_parser("inspect", help="counts per split and label of any source")
    ins.add_argument(
        *DATASET_FLAGS,
        dest="dataset",
        default=None,
        help="a raw or FiftyOne export directory, a FiftyOne dataset name or synthetic:NAME "
        f"(default: {DEFAULT_SOURCE})",
    )
    # The old spelling: the source as a positional argument.
    ins.add_argument("source", nargs="?", default=None, help="the same as --dataset")
    ins.add_argument(
        "--data-dir",
        default=None,
        help=f"cache of the built-in sets (default: $TUNE_CILP_DATA_DIR, else {DATA_DIR})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one data command; bad input raises UserError (printed as one line by run_cli)."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    if args.command == "generate":
        out = generate_raw(args.out, args.scenes, args.seed, args.sphere_fraction, progress=True)
        print(f"wrote {args.scenes} scenes to {out} in {time.perf_counter() - start:.1f} s")
    elif args.command == "ingest":
        name = ingest_raw(
            args.raw_dir,
            args.name,
            subset=args.subset,
            split=args.split,
            seed=args.seed,
            overwrite=args.overwrite,
            data_dir=args.data_dir,
        )
        took = time.perf_counter() - start
        print(f"ingested {args.raw_dir} as FiftyOne dataset {name!r} in {took:.1f} s")
    elif args.command == "export":
        out = export_dataset(args.name, args.out)
        print(f"exported {args.name!r} to {out} in {time.perf_counter() - start:.1f} s")
    else:
        if args.dataset is not None and args.source is not None:
            raise UserError("inspect: give the source once (--dataset SOURCE or SOURCE)")
        source = args.dataset or args.source
        kind = "default" if source is None else detect_source(source)
        arrays = load_arrays(source, data_dir=args.data_dir, progress=True)
        rows = [
            [split, *counts.values(), sum(counts.values())]
            for split, counts in arrays.counts().items()
        ]
        rows.append(["all", *(sum(r[i] for r in rows) for i in (1, 2, 3))])
        print(f"{source or 'default synthetic set'} ({kind}): {len(arrays)} scenes")
        print(tabulate(rows, headers=["split", "cubes", "spheres", "total"]))
    return 0


def cli() -> None:
    """The console script's entry point (pyproject.toml), the same as ``python -m``."""
    run_cli(main)


if __name__ == "__main__":
    cli()
