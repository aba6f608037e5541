"""Peak memory of one trial: GPU memory allocated by torch, or the trial process's resident set.

Ray reuses worker processes across trials, so the peak is reset when a trial starts: on CUDA
with torch's own counters, on Linux by writing 5 to /proc/self/clear_refs, which resets the
kernel's high-water mark of the resident set (VmHWM). Where that is not possible the process's
lifetime peak (getrusage) is the fallback, an upper bound.
"""

from __future__ import annotations

import resource

import torch

MIB = 2**20


def reset_peak(device: torch.device) -> None:
    """Start counting the peak from now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux, or not permitted: peak_mb falls back to the lifetime peak


def peak_mb(device: torch.device) -> float:
    """MiB at the peak since reset_peak: torch's max allocated on CUDA, else the resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MIB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB  # KiB on Linux
