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
