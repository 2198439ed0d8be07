"""The students' linear layers, and which CPU library runs their matrix products.

PyTorch runs a float32 ``nn.Linear`` on the CPU through its BLAS, Intel's MKL in
the official wheels. MKL chooses its kernels by CPU vendor: on an AMD EPYC with
AVX-512 it runs a 2048² product at 225 GFLOP/s where oneDNN (the library behind
PyTorch's CPU convolutions, which chooses by instruction set) runs it at 486, and
DeiT-Ti's and DeiT-S's training steps are 1.4-1.5× and their inference 1.5-2× faster with
it (benchmarks/RESULTS.md, "The AMD EPYC measured: its square ceiling was MKL's").

:class:`Linear` is ``nn.Linear`` with the same parameters and state-dict keys
(timm reads the weights as before); on such a CPU its three products (the
output, the input's gradient and the weight's) go through oneDNN
(``mkldnn::_linear_pointwise``, the kernel PyTorch's own compiler uses for CPU
linears; it takes the transposed operands of the weight's gradient as strided
views, without a copy). Everywhere else (GPUs, bfloat16 autocast,
``torch.compile``, ``torch.export``, other CPUs) it is ``nn.Linear`` exactly.

:func:`set_cpu_linear` chooses for the process: ``auto`` (oneDNN on an AMD CPU
with AVX-512, where it was measured faster; the BLAS elsewhere), ``blas`` or
``onednn``. The config key ``cpu_linear`` sets it for a run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

CHOICES = ("auto", "blas", "onednn")
_choice = "auto"
_resolved: str | None = None


def onednn_available() -> bool:
    """Whether this PyTorch has oneDNN's dense linear kernel for float32 on the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _amd_with_avx512() -> bool:
    """Whether the CPU is AMD's and PyTorch runs its AVX-512 kernels on it."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return False
    vendor = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("vendor_id")), "")
    return "AuthenticAMD" in vendor and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def check_choice(choice: str) -> None:
    """Raise ``ValueError`` unless ``choice`` is one of ``CHOICES`` that this PyTorch can run."""
    if choice not in CHOICES:
        raise ValueError(f"cpu_linear must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "onednn" and not onednn_available():
        raise ValueError("cpu_linear=onednn: this PyTorch was built without oneDNN")


def set_cpu_linear(choice: str) -> None:
    """Choose the library for the students' float32 linear layers on the CPU (see module)."""
    global _choice, _resolved
    check_choice(choice)
    _choice, _resolved = choice, None


@contextmanager
def using_cpu_linear(choice: str) -> Iterator[None]:
    """``set_cpu_linear(choice)`` for the ``with`` block; the caller's choice after it."""
    before = _choice
    set_cpu_linear(choice)
    try:
        yield
    finally:
        set_cpu_linear(before)


def cpu_linear() -> str:
    """The library the students' linear layers use on the CPU now: ``blas`` or ``onednn``."""
    global _resolved
    if _resolved is None:
        if _choice == "auto":
            _resolved = "onednn" if onednn_available() and _amd_with_avx512() else "blas"
        else:
            _resolved = _choice
    return _resolved


def _onednn_applies(x: torch.Tensor) -> bool:
    """Whether this call goes to oneDNN: a plain float32 CPU tensor, eager, no autocast.

    Not an empty one: oneDNN has no inner product over zero rows.
    """
    return (
        type(x) is torch.Tensor  # not a fake or functional tensor being traced
        and x.device.type == "cpu"
        and x.numel() > 0
        and x.dtype == torch.float32
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled("cpu")
        and cpu_linear() == "onednn"
    )


def onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """x · weightᵀ (+ bias) by oneDNN's inner-product kernel, on the CPU in float32."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` whose three products (forward, both gradients) run in oneDNN."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_product(grad, weight.t().contiguous(), None)
        rows = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_weight = onednn_product(rows.t(), x.reshape(-1, x.shape[-1]).t(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = rows.sum(0)
        return grad_x, grad_weight, grad_bias


class Linear(nn.Linear):
    """``nn.Linear`` whose CPU products may run in oneDNN (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_applies(x):
            return _OneDNNLinear.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
