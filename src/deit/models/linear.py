"""The students' linear layers, and which CPU library runs their matrix products.

PyTorch runs a float32 ``nn.Linear`` on the CPU through its BLAS, Intel's MKL in
the official wheels. MKL chooses its kernels by CPU vendor: on an AMD EPYC with
AVX-512 it runs a 2048² product at 225 GFLOP/s where oneDNN (the library behind
PyTorch's CPU convolutions, which chooses by instruction set) runs it at 486 on a
Zen 5 (family 26), and DeiT-Ti's and DeiT-S's training steps are 1.4-1.5× and their
inference 1.5-2× faster with it (benchmarks/RESULTS.md, "The AMD EPYC measured: its
square ceiling was MKL's"). On a Zen 4 (family 25), whose AVX-512 runs on 256-bit
units, the square product gains 1.15× and training loses 2-6 %: MKL stays there.

:class:`Linear` is ``nn.Linear`` with the same parameters and state-dict keys
(timm reads the weights as before); on such a CPU its three products (the
output, the input's gradient and the weight's) go through oneDNN
(``mkldnn::_linear_pointwise``, the kernel PyTorch's own compiler uses for CPU
linears; it takes the transposed operands of the weight's gradient as strided
views, without a copy). Everywhere else (GPUs, bfloat16 autocast,
``torch.compile``, ``torch.export``, other CPUs) it is ``nn.Linear`` exactly.

:func:`set_cpu_linear` chooses for the process: ``auto`` (oneDNN on an AMD CPU of
family 26 or later with AVX-512, where it was measured faster; the BLAS elsewhere),
``blas`` or ``onednn``. The config key ``cpu_linear`` sets it for a run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from deit.cpuinfo import amd_family

CHOICES = ("auto", "blas", "onednn")
_choice = "auto"
_resolved: str | None = None


def onednn_available() -> bool:
    """Whether this PyTorch has oneDNN's dense linear kernel for float32 on the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_faster_here() -> bool:
    """Whether oneDNN trains the students faster than the BLAS on this CPU, as measured.

    An AMD CPU of family 26 or later (Zen 5: 512-bit vector units) running
    PyTorch's AVX-512 kernels: training steps 1.40-1.53× faster. Not family 25
    (Zen 4, whose AVX-512 runs on 256-bit units: 0.94-0.98×), nor an AVX2-only
    CPU (0.98×), nor Intel's, where MKL uses AVX-512 itself. A fixed rule, not a
    timing at start-up, so every process on a machine (ranks, a resume) agrees.
    """
    family = amd_family()
    return (family is not None and family >= 26
            and torch.backends.cpu.get_cpu_capability().startswith("AVX512"))  # fmt: skip


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
            _resolved = "onednn" if onednn_available() and _onednn_faster_here() else "blas"
        else:
            _resolved = _choice
    return _resolved


def _onednn_applies(x: torch.Tensor) -> bool:
    """Whether this call goes to oneDNN: a plain float32 CPU tensor, eager, no autocast.

    Not an empty one: oneDNN has no inner product over zero rows.
    """
    return (
        not torch.compiler.is_compiling()  # before the choice: Dynamo would trace its lookup
        and cpu_linear() == "onednn"  # then the one check most machines' calls stop at
        and type(x) is torch.Tensor  # not a fake or functional tensor being traced
        and x.device.type == "cpu"
        and x.numel() > 0
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
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
