"""The package's layers: a kernel (core, data, training, experiment, results) that never imports a
wing; two wings over it, fusion/ and cilp/ (CILP may use fusion for its baselines, never the other
way); the spaces; analysis; and the command. A module imports its own layer and lower ones, never a
higher one, anywhere in the module (inside functions too); no two modules import each other round a
cycle; and only the command (tune_cilp.run) imports analysis, to print the outcome's table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import ROOT
from import_rules import importers, violations

PACKAGES = ("tune_cilp", "analysis", "search_spaces")
KERNEL = (
    ("tune_cilp.core",),
    ("tune_cilp.data",),
    ("tune_cilp.training",),
    ("tune_cilp.experiment",),
    ("tune_cilp.results",),
)
WINGS = (("tune_cilp.fusion",), ("tune_cilp.cilp",))  # cilp above fusion: it may use fusion
# Lowest first. An entry covers the module and everything under it; `pkg.__init__` covers only
# package pkg's own __init__.py (so a new module directly under tune_cilp/ is unmapped).
LAYERS = (
    *KERNEL,
    *WINGS,
    ("search_spaces", "tune_cilp.spaces"),
    ("analysis",),
    (
        "tune_cilp.run",
        "tune_cilp.run_args",
        "tune_cilp.replicate",
        "tune_cilp.__main__",
        "tune_cilp.__init__",
    ),
)
ANALYSIS_IMPORTERS = {"tune_cilp.run"}  # outside analysis itself


def rule_breaks(root: Path) -> set[str]:
    found = violations(root, PACKAGES, LAYERS)
    outside = {m for m in importers(root, PACKAGES, "analysis") if m.split(".")[0] != "analysis"}
    found |= {f"imports analysis: {m}" for m in sorted(outside - ANALYSIS_IMPORTERS)}
    return found


def test_no_import_goes_up_a_layer_or_round_a_cycle_and_only_the_command_imports_analysis() -> None:
    found = sorted(rule_breaks(ROOT))
    hint = "\n(an unmapped module: declare its layer in LAYERS in tests/command/test_layers.py)"
    assert not found, "\n".join(found) + (hint if any("unmapped" in v for v in found) else "")


# One planted import per rule, in a copy of the real packages; each a lazy import (in a function).
PLANTED = {
    "tune_cilp/training/loop.py": ("tune_cilp.fusion.variants", "upward: tune_cilp.training.loop"),
    "tune_cilp/experiment/driver.py": (
        "tune_cilp.cilp.chain",
        "upward: tune_cilp.experiment.driver",
    ),
    "tune_cilp/fusion/variants.py": ("tune_cilp.cilp.stages", "upward: tune_cilp.fusion.variants"),
    "tune_cilp/replicate.py": ("analysis.stats", "imports analysis: tune_cilp.replicate"),
    "tune_cilp/cilp/chain.py": ("analysis.cilp_table", "upward: tune_cilp.cilp.chain"),
}


@pytest.mark.parametrize("module", sorted(PLANTED))
def test_a_planted_violation_of_each_rule_is_found(tmp_path: Path, module: str) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    target, expected = PLANTED[module]
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    import {target}\n")
    assert rule_breaks(ROOT) == set()
    found = rule_breaks(tmp_path)
    assert any(v.startswith(expected) for v in found), found  # (a cycle may close as well)


def test_checker_finds_exactly_the_upward_import_the_cycle_and_the_stray(tmp_path: Path) -> None:
    files = {
        "fake/__init__.py": "from fake import low\nfrom . import high\n",  # its own: no cycle
        "fake/low.py": "import os\n\ndef f():\n    from .high.a import x\n",  # upward, in a def
        "fake/high/__init__.py": "from .a import x\n",
        "fake/high/a.py": "import fake.high\nfrom fake.high import b\nx = 1\n",
        "fake/high/b.py": "import fake\nfrom fake.high.a import x\n",  # a <-> b
        "fake/stray.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    layers = (("fake.low",), ("fake.high", "fake.__init__"))
    assert violations(tmp_path, ["fake"], layers) == {
        "upward: fake.low -> fake.high.a",
        "cycle: fake.high.a, fake.high.b",
        "unmapped: fake.stray",
    }
    assert importers(tmp_path, ["fake"], "fake.high") == {"fake", "fake.low"}  # b is inside
