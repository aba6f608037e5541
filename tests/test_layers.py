"""The package's layers (issue 18): a module imports its own layer and lower ones, never a higher
one, anywhere in the module, and no two modules import each other round a cycle."""

from __future__ import annotations

from pathlib import Path

from layers import violations
from processes import ROOT

PACKAGES = ("tune_cilp", "analysis", "search_spaces")
# Lowest first. An entry covers the module and everything under it; `pkg.__init__` covers only
# package pkg's own __init__.py (so a new module directly under tune_cilp/ is unmapped).
LAYERS = (
    ("tune_cilp.core",),
    ("tune_cilp.data",),
    ("tune_cilp.models",),
    ("tune_cilp.training",),
    ("tune_cilp.experiment",),
    ("tune_cilp.results",),
    ("tune_cilp.cilp",),
    ("search_spaces", "tune_cilp.spaces"),
    ("analysis",),
    (
        "tune_cilp.run",
        "tune_cilp.run_args",
        "tune_cilp.replicate",
        "tune_cilp.request",
        "tune_cilp.__main__",
        "tune_cilp.__init__",
    ),
)
# Being removed (issue 18); must end empty. The four found at first (tune_cilp.cilp.chain
# importing tune_cilp.run, tune_cilp.run_args and analysis.cilp_table, and the cycle those close)
# went with the single driver lifecycle (c82f5ac).
KNOWN_VIOLATIONS: frozenset[str] = frozenset()


def test_no_import_goes_up_a_layer_or_round_a_cycle() -> None:
    found = violations(ROOT, PACKAGES, LAYERS)
    new = sorted(found - KNOWN_VIOLATIONS)
    hint = "\n(an unmapped module: declare its layer in LAYERS in tests/test_layers.py)"
    assert not new, "\n".join(new) + (hint if any("unmapped" in v for v in new) else "")
    fixed = KNOWN_VIOLATIONS - found
    assert not fixed, f"fixed, drop them from KNOWN_VIOLATIONS: {sorted(fixed)}"


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
