"""What machine a run used, recorded in every summary so numbers can be compared."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch


def hardware(world: Any = None) -> dict[str, Any]:
    """The machine a run used, for the summary: CPU model, threads, torch version.

    With ``world`` (a :class:`deit.distributed.World`) also the device the
    run trained on (the GPU's name) and the number of processes.
    """
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    found = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if world is not None:
        device = world.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        found |= {"device": name, "processes": world.world_size}
    return found
