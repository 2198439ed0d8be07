"""The machine a run uses: what every summary records of it, and the cores a process should use."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from deit.cpuinfo import cpu_fields
from deit.models.linear import cpu_linear


def hardware(world: Any = None) -> dict[str, Any]:
    """The machine a run used, for the summary: CPU model, threads, torch version.

    The CPU's vendor, family and model numbers too where Linux gives them: a
    virtual machine's model name can be as bare as "AMD EPYC" for different
    generations, whose speeds differ.

    On a CPU also the library of the students' linears (``cpu_linear``).

    With ``world`` (a :class:`deit.distributed.World`) also the device the
    run trained on (the GPU's name) and the number of processes.
    """
    fields = cpu_fields()
    cpu = fields.get("model name") or platform.processor() or platform.machine()
    found = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if "cpu family" in fields:  # tells apart machines that share a model name ("AMD EPYC")
        found["cpu_family"] = (f"{fields.get('vendor_id', '?')} family {fields['cpu family']} "
                               f"model {fields.get('model', '?')}")  # fmt: skip
    found["cpu_bf16"] = fast_bf16(torch.device("cpu"))
    if world is None or world.device.type == "cpu":
        found["cpu_linear"] = cpu_linear()  # the library of the student's linears
    if world is not None:
        device = world.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        found |= {"device": name, "processes": world.world_size}
    return found


def usable_cores() -> int:
    """The cores this process should keep busy: its share of the cores it may run on.

    The cores in its CPU affinity (what a container's or a batch scheduler's
    cpuset allows, where ``os.cpu_count`` counts the whole host), divided
    among the processes torchrun started on this machine
    (``LOCAL_WORLD_SIZE``): 8 ranks on 64 cores get 8 each, not 64 each.
    At least 1. The default for every pool of decoding workers.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    return max(1, cores // max(1, local))


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware.

    GPUs from Ampere on do; a CPU does with AVX512-BF16 or AMX tiles. Elsewhere
    bfloat16 autocast still runs but is emulated, and slower than float32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return True  # other backends: trust the user's choice
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def bf16_warning(teacher_bf16: bool, student_bf16: bool, device: torch.device) -> str | None:
    """A one-line warning when bfloat16 autocast is asked for on a device that emulates it.

    The cpu-proxy preset runs its teacher in bfloat16, which is its fastest
    setting on CPUs with bf16 units; on a CPU without them the same setting
    makes every distilled step slower than a float32 teacher would. The run
    goes on as configured: the setting is part of the recipe, so changing it
    is the user's decision.
    """
    fields = [name for name, on in (("teacher_bf16", teacher_bf16), ("bf16", student_bf16)) if on]
    if not fields or fast_bf16(device):
        return None
    off = " ".join(f"--set {name}=false" for name in fields)
    return (
        f"warning: {' and '.join(fields)} asked for, but this {device.type} has no bfloat16 "
        f"units (emulated: slower than float32); {off} is faster here"
    )
