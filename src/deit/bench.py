"""``deit bench``: training and inference speed against this machine's matrix-product ceiling.

For each model a training step (forward, loss, backward, optimizer step) and
an inference step are timed on random data, and their FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
convolutions, backward included). The counter's table has no entry for the
CPU flash-attention kernel, so on the CPU its q·kᵀ and p·v are added with
the counter's own SDPA formulas, which it applies on GPUs: the same work is
counted on every device (and the students' oneDNN linears on a CPU,
:mod:`deit.models.linear`). The ceiling is the best GFLOP/s of a large square
matrix product in the same precision, measured in the same process before
and after the models, on a CPU by the BLAS and by oneDNN (on an AMD EPYC the
BLAS reaches half of what oneDNN does); the ratio to it says how much of the
machine the step uses. Beside it, each step's *attainable* ceiling (:mod:`deit.attainable`):
the step's own matrix products and attention kernels, at the step's batch
and token count, timed alone; the ratio to that says how much of the step's
time is lost outside its products, the ratio of the attainable ceiling to the
square one how much its product shapes cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from deit.attainable import median_seconds, record_products, replay_seconds, sync
from deit.config import ConfigError
from deit.hardware import hardware
from deit.models import create_model
from deit.models.cnn import create_teacher
from deit.models.linear import cpu_linear as cpu_linear_in_use
from deit.models.linear import onednn_available, onednn_product, using_cpu_linear
from deit.models.teachers import Teacher

STUDENTS = (
    "deit_tiny_distilled_patch4_32",
    "deit_small_distilled_patch4_32",
    "deit_tiny_distilled_patch16_224",
    "deit_small_distilled_patch16_224",
)
TEACHERS = ("fastcnn", "resnet18")


@dataclass(frozen=True)
class Measurement:
    """One row of ``deit bench``: a model, a mode and its speed against the ceiling."""

    model: str
    img_size: int
    patch_size: int | None
    batch_size: int
    mode: str  # train or infer
    dtype: str  # float32, or bfloat16 under autocast
    img_per_s: float
    gflop_per_img: float
    gflop_per_s: float
    ceiling_gflop_per_s: float
    ratio: float
    attainable_gflop_per_s: float  # the step's FLOPs over its own products' time alone
    attainable_ratio: float  # gflop_per_s / attainable_gflop_per_s


def matmul_ceiling(
    device: torch.device, dtype: torch.dtype, n: int, repeats: int, library: str = "blas"
) -> float:
    """Best GFLOP/s of an n×n by n×n matrix product: the attainable peak to compare to.

    ``library`` ``blas`` is PyTorch's own product (MKL on an x86 CPU, cuBLAS on a GPU);
    ``onednn`` is oneDNN's inner product on the CPU, the students' linears' other library.
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def product():
        return a @ b if library == "blas" else onednn_product(a, b, None)

    product()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _attention_formulas() -> dict:
    """Counter entries for the CPU flash-attention ops, from the counter's own SDPA formulas."""

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    def linear(x_shape, weight_shape, *args, out_shape=None, **kwargs):
        return 2 * x_shape.numel() * weight_shape[0]

    aten = torch.ops.aten
    formulas = {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }
    if onednn_available():  # the students' linears on some CPUs (deit.models.linear)
        formulas[torch.ops.mkldnn._linear_pointwise] = linear
    return formulas


def _flop_counter() -> FlopCounterMode:
    """A FLOP counter that also counts fused attention (on every device) and oneDNN linears."""
    return FlopCounterMode(display=False, custom_mapping=_attention_formulas())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (attention included on every device)."""
    with _flop_counter() as counter:
        fn()
    return counter.get_total_flops()


def _student_steps(name: str, batch: int, device: torch.device, bf16: bool):
    """(model, size, patch, train step, inference step) of a distilled DeiT student."""
    model = create_model(name).to(device)
    size, patch = model.patch_embed.img_size, model.patch_embed.patch_size
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, model.num_classes, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            cls, dist = model(x)
            loss = (F.cross_entropy(cls, y) + F.cross_entropy(dist, y)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step():
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            model(x)

    return model, size, patch, train_step, infer_step


def _teacher_steps(arch: str, batch: int, device: torch.device, bf16: bool):
    """(model, size, None, train step, inference step) of a teacher CNN.

    Training is a teacher's own SGD step; inference is the frozen, BN-folded,
    channels-last copy that labels a student's batches during distillation.
    """
    model = create_teacher(arch).to(device).to(memory_format=torch.channels_last)
    size = model.img_size
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    frozen = Teacher(model, input_mean=model.mean, input_std=model.std, bf16=bf16).to(device)

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step():
        frozen(x)

    return model, size, None, train_step, infer_step


def measure(
    name: str,
    batch: int,
    device: torch.device,
    ceiling: float,
    *,
    bf16: bool = False,
    warmup: int = 3,
    steps: int = 10,
) -> list[Measurement]:
    """Time the training and inference steps of student or teacher ``name``.

    Each step: its FLOPs and its matrix products from one call, its median time
    over ``steps`` calls after ``warmup``, and its products replayed alone
    (:mod:`deit.attainable`, at most 2 warm-up and 7 timed calls each).
    """
    torch.manual_seed(0)
    build = _teacher_steps if name in TEACHERS else _student_steps
    model, size, patch, train_step, infer_step = build(name, batch, device, bf16)
    rows = []
    for mode, step in (("train", train_step), ("infer", infer_step)):
        model.train(mode == "train")
        counter = _flop_counter()
        products = record_products(step, within=counter)  # one call counts and records
        flops = counter.get_total_flops()
        seconds = median_seconds(step, device, warmup, steps)
        gflop_per_s = flops / seconds / 1e9
        alone = replay_seconds(products, device, min(warmup, 2), min(steps, 7))
        attainable = flops / alone / 1e9
        rows.append(
            Measurement(
                model=name,
                img_size=size,
                patch_size=patch,
                batch_size=batch,
                mode=mode,
                dtype="bfloat16" if bf16 else "float32",
                img_per_s=batch / seconds,
                gflop_per_img=flops / batch / 1e9,
                gflop_per_s=gflop_per_s,
                ceiling_gflop_per_s=ceiling,
                ratio=gflop_per_s / ceiling,
                attainable_gflop_per_s=attainable,
                attainable_ratio=gflop_per_s / attainable,
            )  # fmt: skip
        )
    return rows


def default_batch(name: str, device: torch.device) -> int:
    """Batch size per model: what training uses at 32 px, smaller at 224 px on a CPU."""
    large = name.endswith("_224")
    if device.type == "cuda":
        return 128 if large else 512
    return 32 if large else 128


def bench(
    models: tuple[str, ...] = STUDENTS + TEACHERS,
    *,
    device: torch.device | str = "cpu",
    bf16: bool | None = None,
    batch_size: int | None = None,
    warmup: int = 3,
    steps: int = 10,
    ceiling_size: int = 4096,
    cpu_linear: str = "auto",
    progress: Callable[[str], None] = lambda line: None,
) -> dict:
    """Measure every model in ``models``; return the machine, the ceilings and the rows.

    ``bf16`` (default: on GPUs) runs the steps under bfloat16 autocast and
    compares them with the bf16 ceiling; fp32 otherwise. Both ceilings are
    measured on GPUs; on a CPU only fp32 unless ``bf16`` is asked for.
    ``cpu_linear`` chooses the students' linear layers' library on a CPU
    (:mod:`deit.models.linear`). Unknown model names and non-positive step or
    batch counts raise ``ConfigError`` before anything is timed.
    """
    unknown = [m for m in models if m not in STUDENTS + TEACHERS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; choose from {STUDENTS + TEACHERS}")
    if steps < 1 or (batch_size is not None and batch_size < 1):
        raise ConfigError("steps and batch size must be positive")
    device = torch.device(device)
    bf16 = device.type == "cuda" if bf16 is None else bf16
    dtypes = {"float32": torch.float32}
    if bf16 or device.type == "cuda":
        dtypes["bfloat16"] = torch.bfloat16
    repeats = 20 if device.type == "cuda" else 5
    libraries = ("blas", "onednn") if device.type == "cpu" and onednn_available() else ("blas",)

    def square_products() -> dict[str, float]:
        return {
            f"{k} {lib}": matmul_ceiling(device, t, ceiling_size, repeats, lib)
            for k, t in dtypes.items()
            for lib in libraries
            if lib == "blas" or t == torch.float32
        }

    def best(squares: dict[str, float]) -> dict[str, float]:  # per dtype, the better library
        return {k: max(v for n, v in squares.items() if n.startswith(k)) for k in dtypes}

    squares = square_products()
    ceilings = best(squares)
    used = "bfloat16" if bf16 else "float32"
    rows = []
    with using_cpu_linear(cpu_linear):
        linears = cpu_linear_in_use() if device.type == "cpu" else "blas"
        for name in models:
            batch = batch_size or default_batch(name, device)
            progress(f"{name} batch {batch}")
            rows += measure(name, batch, device, ceilings[used], bf16=bf16, warmup=warmup,
                            steps=steps)  # fmt: skip
    after = square_products()
    squares = {k: max(v, after[k]) for k, v in squares.items()}
    ceilings = best(squares)
    rows = [_against(row, ceilings[used]) for row in rows]
    return {
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ceilings_gflop_per_s": ceilings,
        "square_products_gflop_per_s": squares,
        "cpu_linear": linears,
        "rows": [asdict(r) for r in rows],
    }


def _against(row: Measurement, ceiling: float) -> Measurement:
    """``row`` with its ratio taken to the best ceiling seen in the run."""
    return replace(row, ceiling_gflop_per_s=ceiling, ratio=row.gflop_per_s / ceiling)


def _device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name with its family (one name can cover two
    generations: "AMD EPYC" did)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    machine = hardware()
    family = machine.get("cpu_family")
    return f"{machine['cpu']} ({family})" if family else machine["cpu"]


def markdown(result: dict) -> str:
    """The bench result as a markdown table, with the machine and the ceilings above it."""
    ceilings = ", ".join(f"{k} {v:.1f}" for k, v in result["ceilings_gflop_per_s"].items())
    squares = ", ".join(f"{k} {v:.1f}" for k, v in result["square_products_gflop_per_s"].items())
    lines = [
        f"{result['device']} · {result['threads']} threads · torch {result['torch']} · "
        f"matmul ceiling GFLOP/s: {ceilings} (the best of {squares}) · "
        f"student linears: {result['cpu_linear']}",
        "",
        "| model | img | patch | batch | mode | dtype | img/s | GFLOP/img | GFLOP/s | ratio "
        "| attainable GFLOP/s | of attainable |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['img_size']} | {r['patch_size'] or '-'} | {r['batch_size']} "
            f"| {r['mode']} | {r['dtype']} | {r['img_per_s']:.1f} | {r['gflop_per_img']:.3f} "
            f"| {r['gflop_per_s']:.1f} | {100 * r['ratio']:.1f} % "
            f"| {r['attainable_gflop_per_s']:.1f} | {100 * r['attainable_ratio']:.1f} % |"
        )
    return "\n".join(lines)
