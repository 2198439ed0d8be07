"""A student as an ONNX file (``deit export --format onnx``), checked in ONNX Runtime.

The graph takes ``images``, float32 ``N×3×S×S`` normalised as the model's
preprocessing does, with a dynamic batch axis, and returns ``logits``
``N×classes`` of the chosen head. The preprocessing (``deit.load``'s:
mode, size, crop, mean, std, input size) and the class names travel in the
file's metadata (``metadata_props``), so another runtime can rebuild both.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from deit.export import sample_batch
from deit.inference import Preprocess
from deit.models.deit import VisionTransformer

OPSET = 18
CHECK_BATCHES = (1, 7)


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints, warnings and log lines (they are not ours)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def metadata(preprocess: Preprocess, classes, model: VisionTransformer, source: str) -> dict:
    """What the file records besides the graph: how to preprocess and what the logits mean."""
    return {
        "deit.source": source,
        "deit.head": model.eval_head if model.distilled else "cls",
        "deit.classes": json.dumps(list(classes)),
        "deit.preprocess": json.dumps(
            {
                "mode": preprocess.mode,
                "size": preprocess.size,
                "crop_pct": preprocess.crop_pct,
                "mean": preprocess.mean,
                "std": preprocess.std,
                "img_size": preprocess.img_size,
            }
        ),  # fmt: skip
    }


def write_onnx(
    model: VisionTransformer, preprocess: Preprocess, classes, path: Path, source: str
) -> dict[str, Any]:
    """Export ``model`` to ``path`` and run it in ONNX Runtime at batch 1 and 7.

    Returns ``{"max_abs_diff": {batch: largest |ONNX − PyTorch|}, "opset"}``;
    the caller decides whether the differences pass.
    """
    import onnx
    import onnxruntime

    model = model.eval()
    example = sample_batch(preprocess, 2, seed=0)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet():
        torch.onnx.export(model, (example,), str(path), input_names=["images"],
                          output_names=["logits"], dynamic_shapes={"x": {0: batch}},
                          opset_version=OPSET, dynamo=True, external_data=False)  # fmt: skip
    proto = onnx.load(str(path))
    for key, value in metadata(preprocess, classes, model, source).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = {}
    for size in CHECK_BATCHES:
        x = sample_batch(preprocess, size, seed=size)
        with torch.inference_mode():
            expected = model(x)
        (got,) = session.run(["logits"], {"images": x.numpy()})
        diffs[size] = float((torch.from_numpy(got) - expected).abs().max())
    return {"max_abs_diff": diffs, "opset": OPSET}
