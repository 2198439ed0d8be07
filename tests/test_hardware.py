"""What the machine record says, and the warning for bfloat16 without bfloat16 units."""

import torch

from deit import hardware

CPU = torch.device("cpu")


def test_record_names_cpu_threads_torch_and_bf16_units():
    found = hardware.hardware()
    assert {"cpu", "threads", "torch", "cpu_bf16"} <= set(found)
    assert found["threads"] == torch.get_num_threads()
    assert found["cpu_bf16"] is hardware.fast_bf16(CPU)


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
