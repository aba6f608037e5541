"""The layout's promises that a reader relies on: no two package modules share a file name
(a name says which module), and no block of six or more lines stands twice in the packages
(a step that two features need exists once)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from helpers import ROOT

PACKAGES = ("tune_cilp", "analysis", "search_spaces")
WINDOW = 6


def package_files(root: Path) -> list[Path]:
    return sorted(p for package in PACKAGES for p in (root / package).rglob("*.py"))


def shared_names(root: Path) -> list[str]:
    names = Counter(
        p.name for p in package_files(root) if p.name not in ("__init__.py", "__main__.py")
    )
    return sorted(n for n, count in names.items() if count > 1)


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the lines that carry code: no blanks, comments, imports
    or lone brackets (a function's closing `)` is no logic)."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith(("#", "from ", "import ")) or set(text) <= set(")]}:,"):
            continue
        out.append((number, text))
    return out


def repeated_blocks(root: Path, window: int = WINDOW) -> list[str]:
    """Every run of `window` code lines that stands in two places (exact text, indentation
    aside), as "file:line ~ file:line"."""
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in package_files(root):
        lines = code_lines(path)
        for i in range(len(lines) - window + 1):
            block = tuple(text for _, text in lines[i : i + window])
            seen[block].append(f"{path.relative_to(root)}:{lines[i][0]}")
    return sorted(" ~ ".join(places) for places in seen.values() if len(places) > 1)


def test_no_two_package_modules_share_a_file_name() -> None:
    assert shared_names(ROOT) == []


def test_no_block_of_six_lines_stands_twice_in_the_packages() -> None:
    assert repeated_blocks(ROOT) == []


def test_the_checks_find_a_planted_name_and_block(tmp_path: Path) -> None:
    block = "".join(f"    x{i} = f(x{i - 1})\n" for i in range(1, 7))
    files = {
        "tune_cilp/a/loop.py": f"def f():\n{block}",
        "analysis/loop.py": f"def g():\n    # another place\n{block}    return x6\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "search_spaces").mkdir()
    assert shared_names(tmp_path) == ["loop.py"]
    assert repeated_blocks(tmp_path) == ["analysis/loop.py:3 ~ tune_cilp/a/loop.py:2"]
