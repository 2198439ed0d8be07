"""The attainable ceiling of one step: its own matrix products, timed alone.

A large square matrix product (``deit bench``'s 2048²/4096² ceiling) is the
best case for a machine; a DeiT-Ti step is made of much smaller, thinner
products (tokens × 192 by 192 × 576 …) that no library runs at that speed.
:func:`record_products` runs a step once under a dispatch mode that notes
every matrix product, batched product, convolution and fused attention
kernel it calls (forward and backward), with the shapes, strides and dtypes
of their operands. :func:`replay_seconds` then times each distinct call
alone on fresh random operands of the same layout and sums them, weighted by
how often the step made it. That sum is the step's time if it did nothing but
its own products, each at full speed: the step's FLOPs over it are the
*attainable* GFLOP/s, and the step's time ratio to it says how much is lost
outside the products (elementwise work, normalisation, the optimizer,
memory traffic, Python) rather than in them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

aten = torch.ops.aten
_PRODUCTS = {
    aten.mm,
    aten.addmm,
    aten.bmm,
    aten.baddbmm,
    aten.convolution,
    aten.convolution_backward,
    # under inference mode these arrive whole, before their decomposition into the above
    aten.linear,
    aten.matmul,
    aten.conv2d,
    aten.scaled_dot_product_attention,
}
_ATTENTION_NAMES = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_cudnn_attention_backward",
)
_PRODUCTS |= {getattr(aten, n) for n in _ATTENTION_NAMES if hasattr(aten, n)}
if hasattr(torch.ops.mkldnn, "_linear_pointwise"):  # the students' linears on some CPUs
    _PRODUCTS.add(torch.ops.mkldnn._linear_pointwise)


class _TensorSpec(tuple):
    """(shape, stride, dtype, device) of an operand: enough to make a fresh one like it."""


def _spec(value):
    """A hashable stand-in for a tensor argument; other arguments as they are."""
    if isinstance(value, torch.Tensor):
        return _TensorSpec((tuple(value.shape), tuple(value.stride()), value.dtype, value.device))
    return value


class _Recorder(TorchDispatchMode):
    """Counts the product calls made under it, keyed by operator and operand layout."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()
        self.layouts: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in _PRODUCTS:
            leaves, layout = tree_flatten((args, kwargs))
            key = (func, str(layout), tuple(_spec(v) for v in leaves))
            self.calls[key] += 1
            self.layouts[key] = layout
        return func(*args, **kwargs)


def record_products(
    step: Callable[[], object], within: AbstractContextManager | None = None
) -> list[tuple]:
    """Run ``step`` once; return its product calls as ``(func, leaves, layout, count)``.

    ``within`` is another context the same call runs under (``deit bench``'s FLOP
    counter), so one call of an expensive step serves both; the recorder is
    entered last and so sees the step's calls exactly as it would alone.
    """
    recorder = _Recorder()
    with within or nullcontext(), recorder:
        step()
    return [(key[0], key[2], recorder.layouts[key], n) for key, n in recorder.calls.items()]


def _fresh(leaf):
    """A random tensor laid out like the recorded operand (other arguments unchanged)."""
    if not isinstance(leaf, _TensorSpec):
        return leaf
    shape, stride, dtype, device = leaf
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) if all(shape) else 0
    if dtype.is_floating_point:
        storage = torch.randn(extent, dtype=dtype, device=device)
    else:
        storage = torch.zeros(extent, dtype=dtype, device=device)
    return storage.as_strided(shape, stride)  # broadcast (stride-0) operands stay broadcast


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], object], device: torch.device, warmup: int, steps: int
) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls (robust on a shared machine)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def replay_seconds(
    calls: list[tuple], device: torch.device, warmup: int = 2, repeats: int = 7
) -> float:
    """Seconds the recorded calls take alone: each call's median time × its count, summed."""
    total = 0.0
    with torch.no_grad():
        for func, leaves, layout, count in calls:
            args, kwargs = tree_unflatten([_fresh(v) for v in leaves], layout)
            call = lambda: func(*args, **kwargs)  # noqa: E731, B023 (used in this iteration only)
            total += count * median_seconds(call, device, warmup, repeats)
    return total
