"""The Trainer's CUDA branches (skipped without a GPU): the data resident on the device, bf16
where the card has it, the per-process memory cap, peak memory from torch's counters, and the
same seed giving the same numbers on the GPU."""

from __future__ import annotations

import pytest
import torch

from tune_cilp.data import CilpArrays
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_trainer import Trainer, predict_proba
from tune_cilp.training.device import configure_process
from tune_cilp.training.peak_memory import peak_mb, reset_peak

pytestmark = pytest.mark.gpu
FAST = {"variant": "early", "downsample": "stride", "epochs": 2}


def test_trainer_runs_on_cuda_with_the_data_on_the_device(tiny_arrays: CilpArrays) -> None:
    configure_process(device="cuda", gpu_fraction=0.25)
    reset_peak(torch.device("cuda"))
    trainer = Trainer(TrainConfig(**FAST), tiny_arrays, device="cuda")
    assert trainer.device.type == "cuda" and trainer.train_data.rgb.is_cuda
    assert trainer.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    first = [trainer.run_epoch() for _ in range(2)]
    assert 0 < peak_mb(trainer.device) < 0.25 * torch.cuda.get_device_properties(0).total_memory
    again = Trainer(TrainConfig(**FAST), tiny_arrays, device="cuda")
    second = [again.run_epoch() for _ in range(2)]
    assert [m["train_loss"] for m in first] == pytest.approx([m["train_loss"] for m in second])
    p = predict_proba(trainer.best_model(), tiny_arrays.rgb, tiny_arrays.xyza)
    assert p.shape == (len(tiny_arrays),) and ((p >= 0) & (p <= 1)).all()


def test_a_finished_trials_memory_goes_back_to_the_device(tiny_arrays: CilpArrays) -> None:
    from tune_cilp.training.device import release_memory

    configure_process(device="cuda", gpu_fraction=0.25)
    release_memory(torch.device("cuda"))
    before = torch.cuda.memory_reserved()
    trainer = Trainer(TrainConfig(**FAST), tiny_arrays, device="cuda")
    trainer.run_epoch()
    assert torch.cuda.memory_reserved() > before
    del trainer
    release_memory(torch.device("cuda"))
    assert torch.cuda.memory_reserved() <= before


@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_packed_seeds_train_on_cuda_as_their_solo_trials(
    mode: str, tiny_arrays: CilpArrays
) -> None:
    from dataclasses import replace

    from tune_cilp.fusion.packed import PackedTrainer, packed_configs

    configure_process(device="cuda", gpu_fraction=0.25)
    cfg = TrainConfig(**{**FAST, "epochs": 1}, precision="fp32")
    packed = PackedTrainer(packed_configs(cfg, [51, 52]), tiny_arrays, device="cuda", mode=mode)
    assert packed.params["head.1.weight"].is_cuda
    (epoch,) = list(packed.epochs())
    for k, seed in enumerate([51, 52]):
        solo = Trainer(replace(cfg, seed=seed), tiny_arrays, device="cuda").run_epoch()
        # cuDNN picks its own algorithms: within rounding of the solo run, not bit for bit
        assert epoch[k]["train_loss"] == pytest.approx(solo["train_loss"], rel=1e-3)
