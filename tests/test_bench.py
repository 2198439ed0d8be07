"""``deit bench`` (FLOP counting, ceiling ratios, JSON rows) and the prepared GPU check script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from deit.bench import count_flops, matmul_ceiling, measure
from deit.cli import main
from deit.models import create_model
from deit.models.linear import using_cpu_linear

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"model", "img_size", "patch_size", "batch_size", "mode", "img_per_s", "gflop_per_s",
        "ceiling_gflop_per_s", "ratio", "attainable_gflop_per_s", "attainable_ratio"}  # fmt: skip


def test_a_linear_layer_counts_two_flops_per_multiply_add():
    layer = nn.Linear(16, 8, bias=False)
    assert count_flops(lambda: layer(torch.randn(4, 16))) == 2 * 4 * 16 * 8


def test_attention_is_counted_on_the_cpu_too():
    model = create_model("deit_tiny_patch4_32", embed_dim=32, depth=1, num_heads=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with using_cpu_linear("blas"), torch.utils.flop_counter.FlopCounterMode(display=False) as stock:
        model(x)  # the stock counter knows aten's linear, not oneDNN's
    tokens, dim = 65, 32
    attention = 2 * 2 * 2 * tokens * tokens * dim  # q·kᵀ and p·v for 2 images
    assert count_flops(lambda: model(x)) == stock.get_total_flops() + attention


def test_measure_reports_speed_against_the_ceiling():
    ceiling = matmul_ceiling(torch.device("cpu"), torch.float32, 256, 2)
    rows = measure("fastcnn", 4, torch.device("cpu"), ceiling, warmup=1, steps=1)
    assert [r.mode for r in rows] == ["train", "infer"]
    for r in rows:
        assert r.img_per_s > 0 and r.gflop_per_img > 0
        assert abs(r.ratio - r.gflop_per_s / ceiling) < 1e-9
        assert r.attainable_gflop_per_s > 0
        assert abs(r.attainable_ratio - r.gflop_per_s / r.attainable_gflop_per_s) < 1e-9


def test_bench_json_lists_every_row_with_the_issues_keys(capsys):
    args = ["bench", "--quick", "--json", "--device", "cpu"]
    args += ["--models", "deit_tiny_distilled_patch4_32"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in rows] == ["train", "infer"]
    for r in rows:
        assert set(r) >= KEYS
        assert (r["img_size"], r["patch_size"], r["batch_size"]) == (32, 4, 8)
        assert 0 < r["ratio"] == r["gflop_per_s"] / r["ceiling_gflop_per_s"]


def test_bench_refuses_unknown_models(capsys):
    assert main(["bench", "--models", "resnet50"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.slow
def test_the_gpu_check_script_runs_its_steps_on_a_cpu(cifar_dir, tmp_path):
    """The script's own dry run (DEVICE=cpu, tiny slices), so it cannot rot without a GPU."""
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path / "check"), "BENCH_FLAGS": "--quick",
           "EPOCH_SETS": "train_size=64 test_size=64 batch_size=32 bf16=false",
           "LOADER_CHECK": "0", "BENCH_MODELS": "deit_tiny_distilled_patch4_32",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(cifar_dir)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "% of the" in done.stdout and "GPU-minutes" in done.stdout
    assert "% of it waiting for batches" in done.stdout
    assert (tmp_path / "check" / "seed-epoch" / "summary.json").is_file()
