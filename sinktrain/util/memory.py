"""How much memory a device has free, for refusing an allocation that cannot succeed before it is tried."""

from __future__ import annotations

import os


def available_bytes(device) -> int | None:
    """Bytes free on `device` (a torch.device or its name): the GPU's free memory for CUDA, the kernel's
    MemAvailable (which counts reclaimable page cache, unlike MemFree) for the CPU; None where unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in KiB
    except (OSError, ValueError):
        pass
    try:  # no /proc (not Linux): the physical memory bounds it at least
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None
