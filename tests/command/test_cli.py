"""The command-line conventions every command shares: --help shows each option's default, the
exit codes and the environment variables read; one name for the data source; console scripts
beside `python -m`; arguments that cannot be misread."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from analysis.__main__ import build_parser as analysis_parser
from tune_cilp.core.errors import UserError
from tune_cilp.run_args import build_parser as run_parser

COMMANDS = {  # console script -> its module
    "tune-cilp": "tune_cilp.run",
    "tune-cilp-analysis": "analysis",
    "tune-cilp-data": "tune_cilp.data",
}


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def help_text(module: str, *sub: str) -> str:
    proc = command(sys.executable, "-m", module, *sub, "--help")
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())  # without argparse's line wrapping


def test_run_help_shows_defaults_exit_codes_and_environment() -> None:
    text = help_text("tune_cilp.run")
    for shown in (
        "(default: seed-ablation)",
        "(default: ~/ray_results, so ~/ray_results/<space>)",
        "-1: without limit (default: 0)",
        "(default: synthetic:seed)",
        "(default: $TUNE_CILP_DATA_DIR, else ~/.cache/tune_cilp)",
        "(default: $WANDB_MODE, else offline)",
        "default: $WANDB_PROJECT, else cilp-extended-assessment",
        "(default: $RAY_ADDRESS, else a Ray started on this machine)",
        "exit codes: 0 done 1 a trial failed",
        "2 bad input",
        "130 interrupted",
    ):
        assert shown in text, shown
    for variable in ("RAY_ADDRESS", "TUNE_CILP_DATA_DIR", "WANDB_MODE", "WANDB_API_KEY"):
        assert f" {variable} " in text.split("environment:")[1], variable


def test_analysis_and_data_help_show_defaults_and_exit_codes() -> None:
    analysis = help_text("analysis")
    assert "(default: grid)" in analysis and "exit codes: 0 done 1 a write failed" in analysis
    assert (
        "2 bad input" in analysis
        and "TUNE_CILP_EXPERIMENT" in analysis
        and "MPLCONFIGDIR" in analysis
    )
    data = help_text("tune_cilp.data")
    assert "exit codes:" in data and "TUNE_CILP_DATA_DIR" in data
    generate = help_text("tune_cilp.data", "generate")
    assert "(default: 1074)" in generate and "(default: 51)" in generate
    inspect = help_text("tune_cilp.data", "inspect")
    assert "--dataset DATASET, --data DATASET" in inspect and "(default: synthetic:seed)" in inspect


def _load_benchmark(name: str):
    """A benchmark script as a module (benchmarks/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_name_for_the_data_source_with_the_old_spellings_as_aliases() -> None:
    for flag in ("--dataset", "--data"):
        assert run_parser().parse_args([flag, "synthetic:balanced"]).dataset == "synthetic:balanced"
    bench = _load_benchmark("bench_epoch").build_parser()
    for flag in ("--dataset", "--data"):
        assert bench.parse_args([flag, "raw"]).dataset == Path("raw")
    both = command(sys.executable, "-m", "tune_cilp.data", "inspect", "--dataset", "a", "b")
    assert both.returncode == 2 and both.stderr.startswith("error: inspect: give the source once")


def test_cpus_per_trial_is_a_whole_number_of_cores() -> None:
    with pytest.raises(UserError, match="--cpus-per-trial: invalid int value: '1.5'"):
        run_parser().parse_args(["--cpus-per-trial", "1.5"])
    assert run_parser().parse_args(["--cpus-per-trial", "2"]).cpus_per_trial == 2


def test_to_fiftyone_never_takes_the_experiment_for_a_dataset_name() -> None:
    args = analysis_parser().parse_args(["--to-fiftyone", "~/ray_results/x"])
    assert args.to_fiftyone and args.experiment == "~/ray_results/x"
    assert args.fiftyone_dataset is None
    args = analysis_parser().parse_args(["x", "--to-fiftyone", "--fiftyone-dataset", "d"])
    assert (args.experiment, args.fiftyone_dataset) == ("x", "d")
    alone = command(sys.executable, "-m", "analysis", "x", "--fiftyone-dataset", "d")
    assert alone.returncode == 2
    assert alone.stderr == "error: --fiftyone-dataset: only with --to-fiftyone\n"


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_console_scripts_are_the_python_m_commands(script: str) -> None:
    path = Path(sys.executable).parent / script  # installed by `pip install -e .`
    assert path.is_file(), f"{script} is not installed: pip install -e ."
    assert (
        command(str(path), "--help").stdout
        == command(sys.executable, "-m", COMMANDS[script], "--help").stdout
    )


def test_a_closed_pipe_ends_quietly() -> None:
    # 10 MB through run_cli into `head -1`: far past the pipe's buffer, so writes fail.
    writer = "from tune_cilp.core.errors import run_cli; run_cli(lambda argv: print('x' * 10**7))"
    proc = subprocess.run(
        f'{sys.executable} -c "{writer}" | head -c 10',
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout == "x" * 10 and proc.stderr == "", proc.stderr
