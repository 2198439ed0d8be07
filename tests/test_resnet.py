"""ImageNet ResNets in torchvision's layout as teachers: sizes, names, loading, folding, fit."""

import json

import pytest
import torch
from test_teachers import random_state

from deit.config import ConfigError
from deit.data.augment import normalize
from deit.models.cnn import (
    TEACHER_ARCHS,
    FastCNN,
    create_teacher,
    fold_batchnorm,
    model_from_spec,
    param_count,
    teacher_spec,
)
from deit.models.resnet import IMAGENET_MEAN, IMAGENET_STD, TVResNet18, TVResNet50
from deit.models.teacher_files import (
    CheckpointError,
    check_teacher_fits,
    export_teacher,
    load_teacher,
)
from deit.models.teachers import Teacher

STUDENT_MEAN, STUDENT_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
DEPTHS = {"tv_resnet18": (2, 2, 2, 2), "tv_resnet34": (3, 4, 6, 3), "tv_resnet50": (3, 4, 6, 3)}


def torchvision_layout(arch, num_classes=1000):
    """Key → shape of torchvision's ResNet state dicts, written out by hand."""

    def bn(prefix, n):
        keys = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        return {f"{prefix}.{k}": () if k == "num_batches_tracked" else (n,) for k in keys}

    bottleneck = arch == "tv_resnet50"
    layout = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    c_in = 64
    for i, (planes, depth) in enumerate(
        zip((64, 128, 256, 512), DEPTHS[arch], strict=True), start=1
    ):
        c_out = planes * 4 if bottleneck else planes
        for b in range(depth):
            p, c = f"layer{i}.{b}", c_in if b == 0 else c_out
            if bottleneck:
                shapes = [(planes, c, 1, 1), (planes, planes, 3, 3), (c_out, planes, 1, 1)]
            else:
                shapes = [(planes, c, 3, 3), (planes, planes, 3, 3)]
            for j, shape in enumerate(shapes, start=1):
                layout[f"{p}.conv{j}.weight"] = shape
                layout.update(bn(f"{p}.bn{j}", shape[0]))
            if b == 0 and (i > 1 or c_in != c_out):
                layout[f"{p}.downsample.0.weight"] = (c_out, c_in, 1, 1)
                layout.update(bn(f"{p}.downsample.1", c_out))
        c_in = c_out
    layout["fc.weight"], layout["fc.bias"] = (num_classes, c_in), (num_classes,)
    return layout


def randomise_batchnorm(model, seed=0):
    """Non-trivial BN statistics, scales (some negative) and shifts, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g) * 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model


# ----------------------------------------------------------------------------- architecture


@pytest.mark.parametrize(
    "arch, params",
    [("tv_resnet18", 11_689_512), ("tv_resnet34", 21_797_672), ("tv_resnet50", 25_557_032)],
)
def test_parameter_counts_and_state_dict_layout_are_torchvisions(arch, params):
    torch.manual_seed(0)
    model = create_teacher(arch, num_classes=1000)
    assert arch in TEACHER_ARCHS and model.arch == arch
    assert param_count(model) == params
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert layout == torchvision_layout(arch)
    assert len(layout) == {"tv_resnet18": 122, "tv_resnet34": 218, "tv_resnet50": 320}[arch]
    spot = ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.bn1.bias",
            "layer4.1.bn2.running_var", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.num_batches_tracked", "fc.weight", "fc.bias"]  # fmt: skip
    if arch == "tv_resnet50":
        spot += ["layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.weight"]
        assert "layer1.0.conv3.weight" in layout and layout["fc.weight"] == (1000, 2048)
    assert all(key in layout for key in spot), [k for k in spot if k not in layout]
    assert model.mean == IMAGENET_MEAN and model.std == IMAGENET_STD and model.img_size == 224


def test_resnet50_strides_on_its_3x3_conv_and_inits_like_torchvision():
    model = TVResNet50(num_classes=10)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2)
    assert torch.equal(model.bn1.weight, torch.ones(64)) and torch.equal(
        model.bn1.bias, torch.zeros(64)
    )
    fan_out = 64 * 7 * 7
    assert model.conv1.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    assert model.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 10)


def test_spec_rebuilds_the_architecture_with_its_inputs():
    model = create_teacher("tv_resnet34", num_classes=37, img_size=160, mean=(0.5,) * 3)
    spec = teacher_spec(model)
    assert spec["arch"] == "tv_resnet34" and spec["kwargs"] == {"num_classes": 37}
    rebuilt = model_from_spec(json.loads(json.dumps(spec)))
    assert type(rebuilt) is type(model) and rebuilt.img_size == 160
    assert (
        rebuilt.mean == (0.5,) * 3 and rebuilt.std == IMAGENET_STD and rebuilt.fc.out_features == 37
    )


@pytest.mark.parametrize("arch", list(DEPTHS))
def test_folding_batchnorm_keeps_the_outputs(arch):
    torch.manual_seed(0)
    model = randomise_batchnorm(create_teacher(arch, num_classes=10)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)
        got = folded(x.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert len(model.conv_bn_pairs()) == sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()
    )
    scale = max(1.0, expected.abs().max().item())
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "original intact"


@pytest.mark.parametrize("student_size", [32, 64])
def test_teacher_wrapper_feeds_a_224px_teacher_a_small_student_batch(student_size):
    torch.manual_seed(0)
    model = randomise_batchnorm(TVResNet18(num_classes=37)).eval()
    teacher = Teacher(model, input_mean=STUDENT_MEAN, input_std=STUDENT_STD)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(
        0, 256, (2, 3, student_size, student_size), generator=g, dtype=torch.uint8
    )
    x = normalize(images, STUDENT_MEAN, STUDENT_STD)
    assert teacher.adapt(x).shape == (2, 3, 224, 224)
    logits = teacher(x)
    assert logits.shape == (2, 37) and logits.dtype == torch.float32
    with torch.no_grad():  # exactly the teacher on its own normalisation at its own size
        pixels = torch.nn.functional.interpolate(
            images.float(), size=(224, 224), mode="bicubic", align_corners=False
        )
        expected = model(normalize(pixels, IMAGENET_MEAN, IMAGENET_STD))
    assert torch.allclose(logits, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())


# ----------------------------------------------------------------------------- loading


def test_load_teacher_reads_a_torchvision_checkpoint_unchanged(tmp_path):
    state = random_state(torchvision_layout("tv_resnet18", num_classes=37))
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}
    torch.save(wrapped, tmp_path / "pets.pth")
    model = load_teacher(tmp_path / "pets.pth", arch="tv_resnet18")
    assert isinstance(model, TVResNet18) and not model.training
    assert model.kwargs["num_classes"] == 37 and model.fc.out_features == 37  # from fc.weight
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert model.meta.get("classes") is None and model.img_size == 224

    torch.save({"model": state}, tmp_path / "plain.pt")
    names = [f"breed{i}" for i in range(37)]
    model = load_teacher(
        tmp_path / "plain.pt", arch="tv_resnet18", classes=names, img_size=160, mean=(0.5,) * 3
    )
    assert model.meta["classes"] == names and model.img_size == 160 and model.mean == (0.5,) * 3
    with pytest.raises(CheckpointError, match="3 class names for a teacher of 37 classes"):
        load_teacher(tmp_path / "plain.pt", arch="tv_resnet18", classes=["a", "b", "c"])


def test_a_checkpoint_without_batch_counters_still_loads(tmp_path):
    state = random_state(torchvision_layout("tv_resnet18", num_classes=10))
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    model = load_teacher(tmp_path / "old.pth", arch="tv_resnet18")
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_a_mismatched_checkpoint_is_refused_naming_keys(tmp_path):
    torch.save(create_teacher("tv_resnet34", num_classes=10).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(CheckpointError) as err:
        load_teacher(tmp_path / "r34.pt", arch="tv_resnet18")
    message = str(err.value)
    assert "'tv_resnet18'" in message and "unexpected keys" in message
    assert "layer1.2.conv1.weight" in message and "missing keys" not in message
    state = random_state(torchvision_layout("tv_resnet18", num_classes=10))
    torch.save(state, tmp_path / "r18.pt")
    with pytest.raises(CheckpointError) as err:  # the CIFAR ResNet-18 is another network
        load_teacher(tmp_path / "r18.pt", arch="resnet18")
    message = str(err.value)
    assert "conv1.weight (64, 3, 7, 7) vs (64, 3, 3, 3)" in message and "tv_resnet18" in message


# ----------------------------------------------------------------------------- fit to the data


def test_check_teacher_fits_refuses_wrong_counts_and_names():
    model = TVResNet18(num_classes=4)
    check_teacher_fits(model, 4, ["a", "b", "c", "d"], "pets")  # no names recorded: count only
    with pytest.raises(ConfigError) as err:
        check_teacher_fits(TVResNet18(), 37, None, "imagenet")
    assert str(err.value) == "teacher 'imagenet' predicts 1000 classes but the data set has 37"
    model.meta = {"classes": ["ant", "bee", "cat", "dog"]}
    teacher = Teacher(model, input_mean=STUDENT_MEAN, input_std=STUDENT_STD)
    for t in (model, teacher):
        check_teacher_fits(t, 4, ["ant", "bee", "cat", "dog"], "pets")
        check_teacher_fits(t, 4, None, "pets")
        with pytest.raises(ConfigError) as err:
            check_teacher_fits(t, 4, ["ant", "bee", "cat", "eel"], "pets")
        assert str(err.value) == (
            "teacher 'pets' was trained on classes [ant, bee, cat, dog] in another order or set "
            "than the data set's [ant, bee, cat, eel]: first difference at index 3 ('dog' vs 'eel')"
        )
    model.meta = {"classes": [f"c{i}" for i in range(4)]}
    with pytest.raises(ConfigError, match=r"\[c0, c1, c2, c3\] .* first difference at index 0 "):
        check_teacher_fits(model, 4, ["c1", "c0", "c2", "c3"], "pets")


def test_export_records_the_runs_classes_and_load_exposes_them(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = FastCNN(num_classes=3, widths=(8, 16, 16))
    payload = {"arch": "fastcnn", "model": model.state_dict(), "spec": teacher_spec(model)}
    torch.save(payload, run / "checkpoint.pt")
    (run / "summary.json").write_text(json.dumps({"test_top1": 50.0, "classes": ["x", "y", "z"]}))
    exported = load_teacher(export_teacher(run, tmp_path / "t.safetensors"))
    assert exported.meta.get("classes") == ["x", "y", "z"] and exported.meta["test_top1"] == 50.0
    check_teacher_fits(exported, 3, ["x", "y", "z"], "t")
    with pytest.raises(ConfigError, match=r"index 1 \('y' vs 'z'\)"):
        check_teacher_fits(exported, 3, ["x", "z", "y"], "t")
    dest = export_teacher(run, tmp_path / "u.safetensors", classes=["p", "q", "r"])
    assert load_teacher(dest, img_size=64).meta["classes"] == ["p", "q", "r"]
    assert load_teacher(dest, img_size=64).img_size == 64
    with pytest.raises(CheckpointError, match="2 class names"):
        export_teacher(run, tmp_path / "v.safetensors", classes=["p", "q"])
