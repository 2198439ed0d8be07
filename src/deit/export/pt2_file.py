"""A student as a ``torch.export`` program (``deit export --format pt2``), checked in PyTorch.

The ``.pt2`` file holds the graph and weights; ``torch.export.load(FILE).module()`` runs it
without this package, on normalised float32 ``N×3×S×S`` images with a dynamic batch axis,
returning the chosen head's logits. The preprocessing and class names travel as the extra
file ``deit.json`` (``torch.export.load(FILE, extra_files={"deit.json": ""})``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from deit.export import sample_batch
from deit.export.onnx_file import CHECK_BATCHES, metadata
from deit.inference import Preprocess
from deit.models.deit import VisionTransformer
from deit.models.linear import using_cpu_linear


def write_pt2(
    model: VisionTransformer, preprocess: Preprocess, classes, path: Path, source: str
) -> dict[str, Any]:
    """Export ``model`` with a dynamic batch axis to ``path``, load it back, compare at 1 and 7.

    Returns ``{"max_abs_diff": {batch: largest |loaded − model|}}``.
    """
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (sample_batch(preprocess, 2, seed=0),),
                                  dynamic_shapes={"x": {0: batch}})  # fmt: skip
    extra = {"deit.json": json.dumps(metadata(preprocess, classes, model, source))}
    torch.export.save(program, str(path), extra_files=extra)
    loaded = torch.export.load(str(path)).module()
    diffs = {}
    for size in CHECK_BATCHES:  # the program's linears are aten's: ours too, kernel for kernel
        x = sample_batch(preprocess, size, seed=size)
        with torch.inference_mode(), using_cpu_linear("blas"):
            diffs[size] = float((loaded(x) - model(x)).abs().max())
    return {"max_abs_diff": diffs}
