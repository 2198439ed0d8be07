"""The machine record, the warning for bfloat16 without bfloat16 units, the cores to use."""

import os

import torch

from deit import cpuinfo, hardware
from deit.config import TrainConfig
from deit.hardware import usable_cores
from deit.inputs import workers

CPU = torch.device("cpu")


def test_record_names_cpu_threads_torch_and_bf16_units():
    found = hardware.hardware()
    assert {"cpu", "threads", "torch", "cpu_bf16"} <= set(found)
    assert found["threads"] == torch.get_num_threads()
    assert found["cpu_bf16"] is hardware.fast_bf16(CPU)
    if os.path.exists("/proc/cpuinfo"):  # Linux: the generation, not only the model name
        assert " family " in found["cpu_family"] and " model " in found["cpu_family"]


def test_fast_bf16_follows_the_cpu_features(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert hardware.fast_bf16(CPU) is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert hardware.fast_bf16(CPU) is True


def test_warning_names_each_emulated_bf16_field(monkeypatch):
    monkeypatch.setattr(hardware, "fast_bf16", lambda device: False)
    both = hardware.bf16_warning(True, True, CPU)
    assert both.startswith("warning: teacher_bf16 and bf16 asked for")
    assert "--set teacher_bf16=false --set bf16=false" in both
    assert "\n" not in both
    teacher_only = hardware.bf16_warning(True, False, CPU)
    assert "--set teacher_bf16=false is faster here" in teacher_only
    assert "--set bf16" not in teacher_only
    assert hardware.bf16_warning(False, False, CPU) is None


def test_no_warning_where_bf16_is_fast(monkeypatch):
    monkeypatch.setattr(hardware, "fast_bf16", lambda device: True)
    assert hardware.bf16_warning(True, True, CPU) is None


def test_usable_cores_are_the_affinity_shared_among_the_local_ranks(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert usable_cores() == 16  # one process: every core it may run on
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert usable_cores() == 2  # 8 torchrun ranks on this machine: 2 each
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert usable_cores() == 1  # never none
    config = TrainConfig(workers=-1)
    assert workers(config) == 1 and workers(TrainConfig(workers=3)) == 3


def test_amd_family_reads_the_vendor_and_family(monkeypatch):
    """The generation the linear layers' library is chosen by: AMD's family number only."""
    for fields, want in [({"vendor_id": "AuthenticAMD", "cpu family": "26"}, 26),
                         ({"vendor_id": "AuthenticAMD", "cpu family": "25"}, 25),
                         ({"vendor_id": "GenuineIntel", "cpu family": "6"}, None),
                         ({}, None)]:  # fmt: skip
        monkeypatch.setattr(cpuinfo, "cpu_fields", lambda f=fields: f)
        assert cpuinfo.amd_family() == want
