"""The model zoo: every variant builds, trains a step, and has the documented size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tune_cilp.core.errors import UserError
from tune_cilp.fusion.fusion_model import build_model
from tune_cilp.fusion.variants import (
    DOWNSAMPLES,
    ModelConfig,
    forward_flops,
    fusion_variants,
    list_variants,
    variant_name,
)

# docs/PROTOCOL.md section 1; early is ours (add's layout with the fusion moved to the input).
PARAMETERS = {
    "concat": 2_094_501,
    "add": 1_914_501,
    "hadamard": 1_914_501,
    "late": 3_054_901,
    "early": 1_869_351,
    "rgb": 1_867_551,
    "lidar": 1_867_551,
}


def test_registry_lists_every_variant() -> None:
    assert list_variants() == sorted(PARAMETERS)
    assert DOWNSAMPLES == ("maxpool", "stride")
    assert variant_name({"variant": "concat", "downsample": "maxpool", "seed": 3}) == (
        "concat-maxpool"
    )


@pytest.mark.parametrize("downsample", DOWNSAMPLES)
@pytest.mark.parametrize("variant", sorted(PARAMETERS))
def test_variant_builds_trains_and_has_exact_size(variant: str, downsample: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant, downsample=downsample))
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[variant]
    rgb, xyza = torch.rand(3, 4, 64, 64), torch.randn(3, 4, 64, 64)
    logits = model(rgb, xyza)
    assert logits.shape == (3, 1)
    logits.sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"


def test_downsampling_is_pool_or_stride() -> None:
    pooled = build_model(ModelConfig("concat", "maxpool"))
    strided = build_model(ModelConfig("concat", "stride"))
    pools = [m for m in pooled.modules() if isinstance(m, torch.nn.MaxPool2d)]
    strides = [m.stride for m in strided.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(pools) == 5 and not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())
    assert strides.count((2, 2)) == 5 and strides.count((1, 1)) == 1


def test_early_fusion_sees_eight_channels() -> None:
    model = build_model(ModelConfig("early", "maxpool"))
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 8


def test_fusion_ops_differ() -> None:
    """A product with an all-zero LiDAR map wipes out the image; a sum does not."""
    rgb_a, rgb_b, zeros = (
        torch.rand(2, 4, 64, 64),
        torch.rand(2, 4, 64, 64),
        torch.zeros(2, 4, 64, 64),
    )
    with torch.no_grad():
        torch.manual_seed(0)
        hadamard = build_model(ModelConfig("hadamard"))
        torch.manual_seed(0)
        add = build_model(ModelConfig("add"))
        # zero encoder output for zero input needs zero biases in the LiDAR encoder
        for model in (hadamard, add):
            for module in model.encoders[1].modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.bias.zero_()
        assert torch.equal(hadamard(rgb_a, zeros), hadamard(rgb_b, zeros))
        assert not torch.equal(add(rgb_a, zeros), add(rgb_b, zeros))


def test_late_fusion_normalises_embeddings() -> None:
    model = build_model(ModelConfig("late", "stride"))
    embedding = model.encoders[0](torch.rand(5, 4, 64, 64))
    assert embedding.shape == (5, 100)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(5))


def test_forward_flops_match_hand_count() -> None:
    per_modality = 2 * 9 * (4 * 50 * 64 * 64 // 4 + 50 * 100 * 32 * 32 // 4)
    shared = 2 * 9 * (200 * 200 * 16 * 16 // 4 + 200 * 200 * 8 * 8)
    head = 2 * (12800 * 100 + 100)
    # strided convs compute only the downsampled outputs; pools see full-resolution convs
    assert forward_flops(ModelConfig("concat", "stride")) == 2 * per_modality + shared + head
    assert forward_flops(ModelConfig("concat", "maxpool")) == 446_771_400  # ~447 MFLOP
    assert forward_flops(ModelConfig("early", "maxpool")) < forward_flops(ModelConfig("add"))


def hooked_flops(cfg: ModelConfig) -> int:
    """FLOPs of the built network, counted from the output shapes of its convs and linears."""
    with torch.device("meta"):
        model = build_model(cfg)
        x = torch.zeros(1, 4, 64, 64)
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            total += 2 * k * output.numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * output.numel()

    for m in model.modules():
        m.register_forward_hook(count)
    model(x, x)
    return total


@pytest.mark.parametrize("downsample", DOWNSAMPLES)
@pytest.mark.parametrize("variant", list_variants())
def test_analytic_flops_match_the_built_network(variant: str, downsample: str) -> None:
    cfg = ModelConfig(variant, downsample, channels=(6, 10, 14), hidden=9, num_classes=3)
    assert forward_flops(cfg) == hooked_flops(cfg)
    assert forward_flops(ModelConfig(variant, downsample)) == hooked_flops(
        ModelConfig(variant, downsample)
    )


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"variant": "cross"}, "add, concat, early, hadamard, late"),
        ({"downsample": "avg"}, "maxpool, stride"),
    ],
)
def test_unknown_names_list_the_valid_ones(kwargs: dict, names: str) -> None:
    with pytest.raises(UserError, match=names):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("variant", ["rgb", "lidar"])
def test_single_modality_baseline_sees_only_its_input(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant)).eval()
    a, b = torch.rand(2, 4, 64, 64), torch.rand(2, 4, 64, 64)
    with torch.no_grad():
        if variant == "rgb":
            same, other = model(a, a), model(a, b)
            changed = model(b, a)
        else:
            same, other = model(a, a), model(b, a)
            changed = model(a, b)
    assert torch.equal(same, other) and not torch.equal(same, changed)
    assert fusion_variants() == ["add", "concat", "early", "hadamard", "late"]
