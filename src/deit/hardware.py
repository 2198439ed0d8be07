"""What machine a run used, recorded in every summary so numbers can be compared."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch


def hardware() -> dict[str, Any]:
    """The machine a run used, for the summary: CPU model, threads, torch version."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}
