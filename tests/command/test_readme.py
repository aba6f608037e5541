"""The README stays a five-minute read that opens with the two fresh-machine commands (CI runs the
second), and every command line it shows parses with that command's real argument parser.

Nothing is run: each command line goes through the parser (and the checks that need no Ray, no
data and no experiment), never through `main`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from analysis.__main__ import build_parser as analysis_parser
from analysis.table import check_format
from tune_cilp.core.errors import UserError
from tune_cilp.data.__main__ import _parser as data_parser
from tune_cilp.run import check_applies
from tune_cilp.run_args import build_parser as run_parser
from tune_cilp.run_args import parse_request
from tune_cilp.spaces import get_space

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_LINES = 250
FRESH_RUN = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python -m tune_cilp.run"
)
FRESH_TEST = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -q"
)
# The README's invocations of the three commands, counted by hand: a README that loses some
# (a block no longer recognised as code, say) fails here instead of passing on fewer.
MIN_COMMANDS = 18


def check_run(argv: Sequence[str]) -> None:
    """`python -m tune_cilp.run`: the parser, the request's value checks and the option check
    against the named space (all without Ray); a --replicate source is not looked up."""
    args = run_parser().parse_args(argv)
    if args.list_spaces:
        return
    request = parse_request(args, argv, started_at=0.0)
    if request.replicate is None:
        check_applies(request, get_space(request.space))


def check_analysis(argv: Sequence[str]) -> None:
    """`python -m analysis`: the parser and the table format (checked before any loading)."""
    check_format(analysis_parser().parse_args(argv).format)


def check_data(argv: Sequence[str]) -> None:
    """`python -m tune_cilp.data`: the parser (its --split is parsed by the parser's type)."""
    data_parser().parse_args(argv)


CHECKS: dict[str, Callable[[Sequence[str]], None]] = {
    "tune_cilp.run": check_run,
    "tune-cilp": check_run,
    "analysis": check_analysis,
    "tune-cilp-analysis": check_analysis,
    "tune_cilp.data": check_data,
    "tune-cilp-data": check_data,
}
OPERATORS = {"&&", "||", ";", "|", "&"}
# A code line that may invoke one of them (other code lines, e.g. a folder map, are not shell).
CANDIDATE = re.compile(r"\bpython3? -m (tune_cilp\.run|analysis|tune_cilp\.data)\b|\btune-cilp\b")


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of a code block: inside ``` fences, or indented by four
    spaces after a blank line or another such line; lines ending in a backslash are joined."""
    out: list[tuple[int, str]] = []
    fenced, indented, previous_blank = False, False, True
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, indented = not fenced, False
            previous_blank = False
            continue
        is_code = fenced or (line.startswith("    ") and (previous_blank or indented))
        indented = is_code and not fenced
        previous_blank = not line.strip()
        if not is_code:
            continue
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
            pending = None
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
            continue
        out.append((number, line.strip()))
    return out


def invocations(line: str) -> list[tuple[str, list[str]]]:
    """(command, arguments) of each invocation of a checked command in one shell line; shell
    comments dropped, `&&`-chains and pipes split."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token in OPERATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    found = []
    for words in segments:
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value cmd
            words = words[1:]
        if not words:
            continue
        program = Path(words[0]).name
        if re.fullmatch(r"python3?", program) and words[1:2] == ["-m"] and len(words) > 2:
            command, args = words[2], words[3:]
        else:
            command, args = program, words[1:]
        if command in CHECKS:
            found.append((command, args))
    return found


def readme_commands(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, command, arguments) of every checked command in `text`'s code blocks; a
    line that is not valid shell gives ("", [the line]), which `failures` reports."""
    found = []
    for number, line in code_lines(text):
        if not CANDIDATE.search(line):
            continue
        try:
            found += [(number, command, args) for command, args in invocations(line)]
        except ValueError:  # shlex: an unclosed quote
            found.append((number, "", [line]))
    return found


def failures(text: str) -> list[str]:
    """One line per command in `text` that its parser (or a check after it) refuses."""
    bad = []
    for number, command, args in readme_commands(text):
        try:
            if not command:
                raise UserError("not a valid shell line")
            CHECKS[command](args)
        except UserError as exc:
            bad.append(f"README.md:{number}: {command} {shlex.join(args)}: {exc}")
    return bad


def ci_test_command() -> str:
    """The README line `.ci/run` runs, selected the way it selects it: its `grep -m1 -E PATTERN
    README.md | sed 's/^    //'` line, applied here."""
    script = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"grep -m1 -E '([^']+)' README\.md \| sed 's/\^    //'", script)
    assert match, ".ci/run no longer selects its test command with grep -m1 -E ... | sed"
    pattern = re.compile(match.group(1))
    lines = [line for line in README.read_text().splitlines() if pattern.search(line)]
    assert lines, f"no README line matches .ci/run's pattern {pattern.pattern!r}"
    return lines[0].removeprefix("    ")


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES})"


def test_readme_opens_with_the_fresh_machine_commands() -> None:
    first_two = [line for _, line in code_lines(README.read_text())][:2]
    assert first_two == [FRESH_RUN, FRESH_TEST]
    assert ci_test_command() == FRESH_TEST  # CI runs the README's second command, exactly


def test_every_readme_command_parses() -> None:
    text = README.read_text()
    commands = readme_commands(text)
    assert len(commands) >= MIN_COMMANDS, [f"{n}: {c} {a}" for n, c, a in commands]
    assert {CHECKS[command] for _, command, _ in commands} == {
        check_run,
        check_analysis,
        check_data,
    }
    assert failures(text) == []


@pytest.mark.parametrize(
    "line",
    [
        "python -m tune_cilp.run --no-such-flag",
        "python -m tune_cilp.run --space no-such-space --seeds 51,52",
        "python -m tune_cilp.run --seeds 51,51",
        "python -m tune_cilp.run --epochs 0",
        "python -m tune_cilp.run --space seed-ablation --lidar-cnn x.pt",
        "python -m tune_cilp.run --replicate ~/ray_results/hpo --seeds 51",
        "tune-cilp --top-k 3",
        "python -m analysis",
        "python -m analysis DIR --format no-such-format",
        "tune-cilp-analysis DIR --no-such-flag",
        "python -m tune_cilp.data generate --scenes 10",
        "python -m tune_cilp.data ingest RAW_DIR --name N --split train=x",
        "tune-cilp-data no-such-step",
        "python -m tune_cilp.run --name 'unclosed",
    ],
)
def test_checker_refuses_a_bad_command(line: str) -> None:
    text = f"# x\n\nSome text:\n\n    {line}   # a comment\n"
    assert len(readme_commands(text)) == 1
    assert len(failures(text)) == 1


def test_checker_finds_commands_in_every_kind_of_block() -> None:
    text = "\n".join(
        [
            "    python -m tune_cilp.run --space fusion \\",
            "        --seeds 51,52   # continued",
            "",
            "```",
            "cd x && .venv/bin/python -m analysis DIR --csv t.csv | head",
            "```",
            "",
            "    tune-cilp-data inspect --dataset synthetic:seed",
            "Prose naming python -m tune_cilp.run --no-such-flag is not a command.",
        ]
    )
    commands = readme_commands(text)
    assert [(c, a) for _, c, a in commands] == [
        ("tune_cilp.run", ["--space", "fusion", "--seeds", "51,52"]),
        ("analysis", ["DIR", "--csv", "t.csv"]),
        ("tune-cilp-data", ["inspect", "--dataset", "synthetic:seed"]),
    ]
    assert failures(text) == []
