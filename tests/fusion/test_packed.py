"""Packed seeds (tune_cilp/fusion/packed.py) on CPU in fp32, tiny data: every reported loss is
its solo trial's within 1e-5, each seed starts as its solo trial (weights, batch order, first
step's loss) in either mode, a packed run resumes bit-exactly from its state, and each seed's
state is a solo trial's checkpoint. How far packed and solo drift apart
over whole runs is measured, not asserted: benchmarks/bench_gpu.py --cpu."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import pytest
import torch

from tune_cilp.core.errors import UserError
from tune_cilp.data import CilpArrays
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer
from tune_cilp.fusion.packed import MODES, PackedTrainer, packed_configs

pytestmark = pytest.mark.slow  # trains small models

SEEDS = [51, 52, 53]
CFG = TrainConfig(epochs=2, precision="fp32", batch_size=8)
TIMING = ("epoch_time_s", "samples_per_s")


def without_timing(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIMING} for m in metrics]


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_every_reported_loss_is_its_solo_trials_within_1e_5(tiny_arrays: CilpArrays) -> None:
    packed = list(PackedTrainer(packed_configs(CFG, SEEDS), tiny_arrays, device="cpu").epochs())
    for k, seed in enumerate(SEEDS):
        solo = list(Trainer(replace(CFG, seed=seed), tiny_arrays, device="cpu").epochs())
        for epoch, (p, s) in enumerate(zip([e[k] for e in packed], solo, strict=True), 1):
            for key in ("train_loss", "val_loss", "best_val_loss"):
                assert math.isclose(p[key], s[key], rel_tol=1e-5), (seed, epoch, key)


@pytest.mark.parametrize("mode", MODES)
def test_each_seed_starts_as_its_solo_trial(mode: str, tiny_arrays: CilpArrays) -> None:
    # vmap's batched kernels round differently: equal at the first step, drifting after it
    # (how far: benchmarks/bench_packed.py)
    packed = PackedTrainer(packed_configs(CFG, SEEDS), tiny_arrays, device="cpu", mode=mode)
    first = packed.trainers[0]
    orders = [t.batches(len(first.train_data), t.balance.sample_weights) for t in packed.trainers]
    indices = [next(order) for order in orders]
    batches = [first.train_data.batch(index, first.memory_format) for index in indices]
    rgb, xyza, labels = (torch.stack(parts) for parts in zip(*batches, strict=True))
    losses = packed._losses(packed.params, packed.buffers, rgb, xyza, labels, None)
    for k, seed in enumerate(SEEDS):
        solo = Trainer(replace(CFG, seed=seed), tiny_arrays, device="cpu")
        for name, p in solo.module.named_parameters():
            assert torch.equal(p, packed.params[name][k]), name  # the same initial weights
        index = next(solo.batches(len(solo.train_data), solo.balance.sample_weights))
        assert torch.equal(index, indices[k])  # the same batch order
        r, x, y = solo.train_data.batch(index, solo.memory_format)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(solo.module(r, x)[:, 0], y)
        assert math.isclose(losses[k].item(), loss.item(), rel_tol=1e-5)


def test_every_seed_reports_its_own_epochs(tiny_arrays: CilpArrays) -> None:
    packed = PackedTrainer(packed_configs(CFG, SEEDS), tiny_arrays, device="cpu")
    epochs = list(packed.epochs())
    assert packed.done and [len(e) for e in epochs] == [3, 3]
    for k in range(len(SEEDS)):
        assert [e[k]["epoch"] for e in epochs] == [1, 2]
        assert packed.trainers[k].predictions().last.epoch == 2
    assert len({epochs[1][k]["val_loss"] for k in range(len(SEEDS))}) == len(SEEDS)


def test_a_packed_run_resumes_bit_exactly(tiny_arrays: CilpArrays) -> None:
    cfgs = packed_configs(CFG, SEEDS)
    whole = PackedTrainer(cfgs, tiny_arrays, device="cpu")
    straight = list(whole.epochs())

    cut = PackedTrainer(cfgs, tiny_arrays, device="cpu")
    first = cut.run_epoch()
    buffer = io.BytesIO()
    torch.save(cut.state_dict(), buffer)
    buffer.seek(0)
    resumed = PackedTrainer(cfgs, tiny_arrays, device="cpu")
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    second = resumed.run_epoch()
    assert without_timing(first) == without_timing(straight[0])
    assert without_timing(second) == without_timing(straight[1])
    assert resumed.done


def test_a_seeds_packed_state_is_its_solo_checkpoint(tiny_arrays: CilpArrays) -> None:
    packed = PackedTrainer(packed_configs(CFG, SEEDS), tiny_arrays, device="cpu")
    packed.run_epoch()
    for k, seed in enumerate(SEEDS):
        solo = Trainer(replace(CFG, seed=seed), tiny_arrays, device="cpu")
        solo.load_state_dict(packed.state_dict()["seeds"][k])
        assert solo.epoch == 1
        for name, p in solo.module.named_parameters():
            assert torch.equal(p, packed.params[name][k].detach())
        moments = solo.optimizer.state_dict()["state"][0]["exp_avg"]
        assert torch.equal(moments, packed.optimizer.state_dict()["state"][0]["exp_avg"][k])
        solo.run_epoch()  # and trains on from it alone


def test_only_seeds_of_one_configuration_pack(tiny_arrays: CilpArrays) -> None:
    with pytest.raises(UserError, match="share one configuration"):
        PackedTrainer([CFG, replace(CFG, lr=0.01, seed=52)], tiny_arrays, device="cpu")
    with pytest.raises(UserError, match="distinct"):
        packed_configs(CFG, [51, 51])
    with pytest.raises(UserError, match="packing mode 'fast'"):
        PackedTrainer(packed_configs(CFG, SEEDS), tiny_arrays, device="cpu", mode="fast")
    packed = PackedTrainer(packed_configs(CFG, SEEDS), tiny_arrays, device="cpu")
    with pytest.raises(UserError, match="holds 2 packed seeds, this run packs 3"):
        packed.load_state_dict({"seeds": packed.state_dict()["seeds"][:2]})
