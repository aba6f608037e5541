"""Adding a fusion op takes the registry + the network (issue 30): tests/fusion/scratch_op.py adds
"max" and a variant using it with three one-line entries; nothing else knows it. Spaces that grid
over fusion_variants() (fusion) pick the variant up, and the comparison table ranks it. An
unknown op (or a place to fuse) is refused when the registry is built.

A real run's processes (the driver and every Ray worker) each import the package afresh, so each
gets the entries the way each would import the edited files: a sitecustomize on their PYTHONPATH
calls scratch_op.register() when the interpreter starts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import scratch_op
import torch
from helpers import ROOT, RayEnv, plugin_env, run_command

from tune_cilp.fusion.fusion_model import build_model
from tune_cilp.fusion.variants import ModelConfig, Variant, forward_flops, fusion_variants

HERE = Path(__file__).resolve().parent


@pytest.fixture
def registered() -> Iterator[None]:
    scratch_op.register()
    yield
    scratch_op.unregister()


def test_an_unknown_op_or_place_is_refused_when_the_registry_is_built() -> None:
    with pytest.raises(ValueError, match="op: expected one of concat, add, mul, rgb, lidar"):
        Variant(fuse_at="features", op="max")  # not in OPS: before, it became multiplication
    with pytest.raises(ValueError, match="fuse_at: expected one of input, features, embedding"):
        Variant(fuse_at="logits", op="add")
    with pytest.raises(ValueError, match="takes one modality's features"):
        Variant(fuse_at="input", op="rgb")


def test_the_scratch_op_builds_trains_and_its_flops_are_counted(registered: None) -> None:
    assert scratch_op.VARIANT in fusion_variants()
    cfg = ModelConfig(scratch_op.VARIANT, "stride")
    model = build_model(cfg)
    rgb, xyza = torch.rand(2, 4, 64, 64), torch.rand(2, 4, 64, 64)
    model(rgb, xyza).sum().backward()
    a, b = model.encoders[0](rgb), model.encoders[1](xyza)
    assert torch.equal(model(rgb, xyza), model.head(model.trunk(torch.maximum(a, b))))
    same_shape = ModelConfig("add", "stride")  # max keeps one input's width, as add does
    assert forward_flops(cfg) == forward_flops(same_shape)
    params = sum(p.numel() for p in model.parameters())
    assert params == sum(p.numel() for p in build_model(same_shape).parameters())


@pytest.mark.slow
def test_the_scratch_variant_runs_in_the_fusion_space_and_is_in_the_table(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv
) -> None:
    env = plugin_env(tmp_path, "scratch_op", HERE, ray_env.env)
    cmd = run_command(tiny_raw, tmp_path / "runs", "--space", "fusion", "--smoke-test")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("starting trials")[-1]
    for downsample in ("maxpool", "stride"):
        assert f"maxfuse {downsample} 51" in proc.stdout  # its progress line
        assert f"maxfuse-{downsample}" in table  # a row of the ranking
