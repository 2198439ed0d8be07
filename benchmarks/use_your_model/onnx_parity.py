"""ONNX parity of issue 28: every student size at 32 px (patch 4) and 224 px (patch 16), with and
without distillation token, plus any trained checkpoints given, through ``deit.export_model``.

``python benchmarks/use_your_model/onnx_parity.py WORKDIR [CHECKPOINT ...]`` prints one JSON line
per model: the largest |ONNX Runtime - PyTorch| logit difference at batch 1 and 7 (the export
itself fails over 1e-4). Random weights (seed 0) except the checkpoints given.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from deit import export_model
from deit.config import TrainConfig
from deit.models import create_model


def main() -> None:
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    checkpoints = [Path(p) for p in sys.argv[2:]]
    for size in ("nano", "micro", "tiny", "small"):
        for patch, img in ((4, 32), (16, 224)):
            for token in ("", "_distilled"):
                name = f"deit_{size}{token}_patch{patch}_{img}"
                torch.manual_seed(0)
                model = create_model(name, num_classes=10)
                path = work / f"{name}.pt"
                config = dataclasses.asdict(TrainConfig(student=name))
                torch.save({"config": config, "model": model.state_dict()}, path)
                checkpoints.append(path)
    for path in checkpoints:
        start = time.perf_counter()
        report = export_model(path, "onnx", work / f"{path.stem}.onnx", overwrite=True)
        row = {
            "checkpoint": str(path),
            "max_abs_diff": report["max_abs_diff"],
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
