"""deit export --format timm: timm's name and kwargs, strict loading, bit-identical logits."""

import dataclasses

import pytest
import torch

from deit.cli import main
from deit.config import TrainConfig
from deit.export import export_model
from deit.export.timm_file import TIMM_NAMES, timm_spec
from deit.models import create_model
from deit.models.linear import using_cpu_linear

try:
    import timm
    from safetensors.torch import load_file
except ImportError as err:  # timm needs torchvision, which this project does not install
    timm, TIMM_MISSING = None, f"timm is not importable ({err}): pip install 'deit[timm]'"
else:
    TIMM_MISSING = ""
needs_timm = pytest.mark.skipif(timm is None, reason=TIMM_MISSING)


def save_student(path, student, num_classes=10):
    torch.manual_seed(0)
    model = create_model(student, num_classes=num_classes)
    config = dataclasses.asdict(TrainConfig(student=student))
    torch.save({"config": config, "model": model.state_dict()}, path)
    return model.eval()


@pytest.mark.parametrize(
    "student, name, kwargs",
    [
        ("deit_tiny_distilled_patch16_224", "deit_tiny_distilled_patch16_224", {}),
        ("deit_base_patch16_384", "deit_base_patch16_384", {}),
        ("deit_small_patch16_384", "deit_tiny_patch16_224",
         dict(img_size=384, patch_size=16, embed_dim=384, depth=12, num_heads=6)),
        ("deit_nano_distilled_patch4_32", "deit_tiny_distilled_patch16_224",
         dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=2)),
    ],
)  # fmt: skip
def test_timm_name_where_timm_has_one_else_kwargs(student, name, kwargs):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = create_model(student, num_classes=10)
    assert timm_spec(model) == (name, kwargs | {"num_classes": 10})


@pytest.mark.skipif(timm is not None, reason="timm is installed")
def test_missing_timm_is_one_line_naming_the_pip_install(tmp_path, capsys):
    save_student(tmp_path / "s.pt", "deit_nano_patch4_32")
    out = tmp_path / "s.safetensors"
    assert main(["export", "--checkpoint", str(tmp_path / "s.pt"), "--format", "timm",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'deit[timm]'" in err[0] and not out.exists()


def check_in_timm(tmp_path, student):
    model = save_student(tmp_path / "s.pt", student)
    report = export_model(tmp_path / "s.pt", "timm", tmp_path / "s.safetensors")
    assert report["max_abs_diff"] == {1: 0.0, 7: 0.0}
    theirs = timm.create_model(report["timm_name"], **report["timm_kwargs"])
    theirs.load_state_dict(load_file(str(tmp_path / "s.safetensors")), strict=True)
    x = torch.randn(5, 3, model.patch_embed.img_size, model.patch_embed.img_size)
    with torch.inference_mode(), using_cpu_linear("blas"):  # timm's kernels
        assert torch.equal(theirs.eval()(x), model(x))


@needs_timm
@pytest.mark.parametrize("student", ["deit_nano_distilled_patch4_32", "deit_micro_patch4_32"])
def test_timm_loads_the_export_strict_with_identical_logits(tmp_path, student):
    check_in_timm(tmp_path, student)


@needs_timm
@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(TIMM_NAMES))
def test_every_student_timm_has_loads_with_identical_logits(tmp_path, student):
    check_in_timm(tmp_path, student)
