"""Where and how a trainer computes: the device, the precision, the memory format, the
evaluation batch, and the process-wide torch settings (configure_process)."""

from __future__ import annotations

import torch

from tune_cilp.core.errors import UserError
from tune_cilp.training.trial_config import is_int

# Evaluation batch per device type. On CPU, batches beyond ~32 fall out of cache: 256 was 3x
# slower per sample than 32 (2 Zen 4 cores, benchmarks/README.md); GPUs want big batches.
EVAL_BATCH = {"cpu": 32, "cuda": 1024}


def eval_batch_size(device: torch.device) -> int:
    """Scenes per evaluation batch on ``device`` (EVAL_BATCH; 32 on other device types)."""
    return EVAL_BATCH.get(device.type, 32)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"device: {exc}") from None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls/convs in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision, "fp32" or "bf16", that ``precision`` ("auto" or either) means here."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """channels_last where it is faster. Measured on 2 Zen 4 cores (benchmarks/README.md): a
    training step is ~2x faster in NHWC in fp32 and ~1.2x in bf16; CUDA tensor cores want NHWC
    too. So None means True on CPU and CUDA; other devices keep the default layout."""
    if channels_last is None:
        return device.type in ("cpu", "cuda")
    return channels_last


def configure_process(
    threads: int | None = None,
    device: str | torch.device | None = None,
    gpu_fraction: float | None = None,
) -> None:
    """This process's torch settings for training: intra-op threads (the CPUs the caller was
    granted), flush-to-zero (denormals are slow on CPUs and change no result that matters
    here), and on CUDA a memory cap of ``gpu_fraction`` of the device."""
    if threads is not None:
        if not is_int(threads) or threads < 1:
            raise UserError(f"threads: expected an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    target = resolve_device(device)
    if target.type == "cuda" and gpu_fraction is not None:
        if not 0 < gpu_fraction <= 1:
            raise UserError(f"gpu_fraction: expected a number in (0, 1], got {gpu_fraction!r}")
        # torch wants an index: a bare "cuda" is the current device (Ray sets CUDA_VISIBLE_DEVICES).
        index = target.index if target.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(float(gpu_fraction), index)


def release_memory(device: torch.device) -> None:
    """Give what a finished trial's tensors held back to the device: Ray reuses a trial's
    process for the next trial, and torch's caching allocator would keep the blocks reserved
    (other trials' processes sharing the GPU could not have them). A no-op but for the garbage
    collection off CUDA."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
