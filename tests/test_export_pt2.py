"""deit export --format pt2: a torch.export program with a dynamic batch axis, checked."""

import dataclasses
import json

import pytest
import torch

from deit.cli import main
from deit.config import TrainConfig
from deit.models import create_model
from deit.models.linear import using_cpu_linear


@pytest.mark.slow  # torch.export of a first model: about 3 s on a busy 2-core CPU
def test_pt2_program_runs_any_batch_and_carries_the_preprocessing(tmp_path, capsys):
    torch.manual_seed(0)
    student = "deit_nano_patch4_32"
    model = create_model(student, num_classes=10).eval()
    config = dataclasses.asdict(TrainConfig(student=student))
    torch.save({"config": config, "model": model.state_dict()}, tmp_path / "s.pt")
    out = tmp_path / "s.pt2"
    assert main(["export", "--checkpoint", str(tmp_path / "s.pt"), "--format", "pt2", "--out",
                 str(out), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] == {"1": 0.0, "7": 0.0}  # the same kernels: bit-identical
    extra = {"deit.json": ""}
    program = torch.export.load(str(out), extra_files=extra).module()
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode(), using_cpu_linear("blas"):  # the program's kernels
        assert torch.equal(program(x), model(x))
    assert json.loads(json.loads(extra["deit.json"])["deit.classes"])[0] == "airplane"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt", "s.pt2"]
