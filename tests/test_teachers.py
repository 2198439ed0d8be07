"""Teachers: input conversion, freezing, BN folding, checkpoint layouts, training and resuming."""

import json

import pytest
import torch
import torch.nn.functional as F

from deit.config import ConfigError
from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from deit.models import create_model, teacher_files
from deit.models.cnn import FastCNN, ResNet18, fold_batchnorm, model_from_spec, teacher_spec
from deit.models.teacher_files import CheckpointError, export_teacher, load_teacher
from deit.models.teachers import Teacher, evaluate_teacher, predict, tta_logits
from deit.teacher_training import (
    AltFlipTranslate,
    Lookahead,
    TeacherConfig,
    lr_factor,
    train_teacher,
)

STUDENT_MEAN, STUDENT_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
TINY = dict(widths=(8, 16, 16))


def randomise_batchnorm(model, seed=0):
    """Give every BN non-trivial statistics and shifts, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
            if m.weight.requires_grad:  # ResNet BN scales learn (and may be negative)
                m.weight.data.copy_(torch.randn(n, generator=g))
    return model


def uint8_images(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------------- the wrapper


def test_teacher_sees_exactly_its_own_normalisation():
    model = randomise_batchnorm(FastCNN(**TINY)).eval()
    images = uint8_images()
    teacher = Teacher(model, input_mean=STUDENT_MEAN, input_std=STUDENT_STD)
    native = normalize(images, model.mean, model.std)
    adapted = teacher.adapt(normalize(images, STUDENT_MEAN, STUDENT_STD))
    torch.testing.assert_close(adapted, native, atol=1e-6, rtol=0)
    with torch.no_grad():
        expected = model(native)
    torch.testing.assert_close(teacher(normalize(images, STUDENT_MEAN, STUDENT_STD)), expected)


def test_teacher_resizes_the_students_resolution_back_to_its_own(cifar10):
    model = FastCNN(**TINY).eval()
    images = cifar10.test_images[:16]
    teacher = Teacher(model, input_mean=STUDENT_MEAN, input_std=STUDENT_STD)
    student = normalize(images, STUDENT_MEAN, STUDENT_STD)
    native = normalize(images, model.mean, model.std)
    upscaled = F.interpolate(student, scale_factor=2, mode="nearest")  # a student at 64 px
    torch.testing.assert_close(teacher.adapt(upscaled), native, atol=1e-6, rtol=0)
    for size in (48, 64, 96):  # a smooth upscale comes back close, not exact
        smooth = F.interpolate(student, size=(size, size), mode="bicubic", align_corners=False)
        back = teacher.adapt(smooth)
        assert back.shape == native.shape
        assert (back - native).abs().mean() < 0.15 * native.std()


def test_predict_resizes_uint8_images_as_the_wrapper_does():
    model = randomise_batchnorm(FastCNN(**TINY)).eval()
    images = uint8_images(n=4)
    upscaled = images.repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest, 64 px
    torch.testing.assert_close(predict(model, upscaled), predict(model, images))
    teacher = Teacher(model, input_mean=STUDENT_MEAN, input_std=STUDENT_STD)
    for size in (24, 48, 64):
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear")
        resized = resized.round().clamp(0, 255).to(torch.uint8)
        wrapped = teacher(normalize(resized, STUDENT_MEAN, STUDENT_STD))
        torch.testing.assert_close(predict(teacher, resized), wrapped, atol=1e-4, rtol=1e-4)


def test_model_from_spec_rebuilds_the_architecture_and_its_inputs():
    model = FastCNN(**TINY, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), img_size=24)
    rebuilt = model_from_spec(teacher_spec(model))
    assert type(rebuilt) is FastCNN and teacher_spec(rebuilt) == teacher_spec(model)


def test_teacher_accuracy_on_student_tensors_equals_native_accuracy(trained_run):
    out, cifar10 = trained_run
    model = load_teacher(out)  # the run directory: its checkpoint.pt
    assert teacher_spec(model) == teacher_spec(load_teacher(out / "checkpoint.pt"))
    with pytest.raises(CheckpointError, match="holds no checkpoint.pt"):
        load_teacher(out.parent)
    images, labels = cifar10.test_images[:500], cifar10.test_labels[:500]
    native = evaluate_teacher(model, images, labels)
    teacher = Teacher(model, input_mean=STUDENT_MEAN, input_std=STUDENT_STD)
    logits = teacher(normalize(images, STUDENT_MEAN, STUDENT_STD))
    assert 100.0 * (logits.argmax(1) == labels).float().mean().item() == pytest.approx(native)
    assert evaluate_teacher(teacher, images, labels) == pytest.approx(native)


def test_bf16_teacher_agrees_with_fp32_on_real_images(cifar10):
    shipped = load_teacher("cifar10-teacher")
    x = normalize(cifar10.test_images[:256], CIFAR10_MEAN, CIFAR10_STD)
    fp32 = Teacher(shipped, input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD)(x)
    bf16 = Teacher(shipped, input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD, bf16=True)(x)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert (bf16.argmax(1) == fp32.argmax(1)).float().mean() >= 0.98


def test_teacher_stays_frozen_and_in_eval_mode_through_a_student_step():
    teacher = Teacher(
        randomise_batchnorm(FastCNN(**TINY)), input_mean=STUDENT_MEAN, input_std=STUDENT_STD
    )
    student = create_model("deit_tiny_distilled_patch8_32", embed_dim=16, depth=1, num_heads=2)
    both = torch.nn.ModuleDict({"student": student, "teacher": teacher})
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in both.parameters() if p.requires_grad], lr=0.1)

    both.train()  # what a training loop does to everything it holds
    images, labels = uint8_images(8), torch.arange(8) % 10
    x = normalize(images, STUDENT_MEAN, STUDENT_STD)
    cls, dist = student(x)
    teacher_logits = teacher(x)
    assert not teacher_logits.requires_grad and not teacher_logits.is_inference()
    soft = F.kl_div(
        F.log_softmax(dist / 3, 1),
        F.log_softmax(teacher_logits / 3, 1),
        log_target=True,
        reduction="batchmean",
    )
    hard = F.cross_entropy(dist, teacher_logits.argmax(1))
    loss = F.cross_entropy(cls, labels) + soft + hard
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), f"teacher {key} changed"
    assert any(not torch.equal(v, student_before[k]) for k, v in student.state_dict().items())


# ----------------------------------------------------------------------------- BN folding


@pytest.mark.parametrize("make", [lambda: FastCNN(**TINY), lambda: ResNet18()])
def test_folding_batchnorm_keeps_the_outputs(make):
    torch.manual_seed(0)
    model = randomise_batchnorm(make()).eval()
    x = normalize(uint8_images(4), model.mean, model.std)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)
        got = folded(x.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, scale)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "original intact"


def test_folding_through_max_pool_refuses_a_negative_scale():
    model = FastCNN(**TINY).eval()
    model.group1.norm1.weight.data[0] = -1.0
    with pytest.raises(ValueError, match="max-pool"):
        fold_batchnorm(model)


# ----------------------------------------------------------------------------- ResNet-18 layout


def public_resnet18_layout(num_classes=10):
    """Key → shape of the widely shared CIFAR-10 ResNet-18 checkpoints, written out by hand."""

    def bn(prefix, n):
        return {
            f"{prefix}.weight": (n,),
            f"{prefix}.bias": (n,),
            f"{prefix}.running_mean": (n,),
            f"{prefix}.running_var": (n,),
            f"{prefix}.num_batches_tracked": (),
        }

    layout = {"conv1.weight": (64, 3, 3, 3), **bn("bn1", 64)}
    c_in = 64
    for i, planes in enumerate((64, 128, 256, 512), start=1):
        for b in (0, 1):
            p = f"layer{i}.{b}"
            layout[f"{p}.conv1.weight"] = (planes, c_in if b == 0 else planes, 3, 3)
            layout.update(bn(f"{p}.bn1", planes))
            layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            layout.update(bn(f"{p}.bn2", planes))
            if b == 0 and c_in != planes:
                layout[f"{p}.shortcut.0.weight"] = (planes, c_in, 1, 1)
                layout.update(bn(f"{p}.shortcut.1", planes))
        c_in = planes
    layout["linear.weight"] = (num_classes, 512)
    layout["linear.bias"] = (num_classes,)
    return layout


def random_state(layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


def test_resnet18_loads_the_public_checkpoint_layout_strictly():
    layout = public_resnet18_layout()
    assert len(layout) == 122
    assert layout["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert "layer1.0.shortcut.0.weight" not in layout
    model = ResNet18()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    state = random_state(layout)
    model.load_state_dict(state, strict=True)
    assert torch.equal(
        model.get_submodule("layer4.1.bn2").running_var, state["layer4.1.bn2.running_var"]
    )
    assert model.mean == (0.4914, 0.4822, 0.4465) and model.std == (0.2471, 0.2435, 0.2616)
    assert isinstance(model.maxpool, torch.nn.MaxPool2d)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_load_teacher_reads_a_bare_public_state_dict_with_arch(tmp_path):
    state = random_state(public_resnet18_layout())
    wrapped = {"net": {f"module.{k}": v for k, v in state.items()}, "acc": 93.0, "epoch": 200}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    model = load_teacher(tmp_path / "ckpt.pth", arch="resnet18")
    assert torch.equal(
        model.state_dict()["layer3.0.shortcut.1.running_mean"],
        state["layer3.0.shortcut.1.running_mean"],
    )
    torchvision_names = {
        k.replace(".shortcut.", ".downsample.").replace("linear.", "fc."): v
        for k, v in state.items()
    }
    torch.save(torchvision_names, tmp_path / "tv.pt")
    model = load_teacher(tmp_path / "tv.pt", arch="resnet18")
    assert torch.equal(model.linear.bias, state["linear.bias"])


# ----------------------------------------------------------------------------- load errors


def test_load_teacher_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no teacher checkpoint"):
        load_teacher(tmp_path / "nope.pt")


def test_load_teacher_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("these are not the weights you are looking for\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_teacher(bad)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_teacher(fake)


def test_load_teacher_names_the_keys_of_a_wrong_architecture(tmp_path):
    cnn = FastCNN(**TINY)
    torch.save({"arch": "resnet18", "model": cnn.state_dict()}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError) as err:
        load_teacher(tmp_path / "wrong.pt")
    message = str(err.value)
    assert (
        "'resnet18'" in message and "missing keys" in message and "layer1.0.conv1.weight" in message
    )
    assert "unexpected keys" in message and "whiten.weight" in message


def test_load_teacher_refuses_a_student_checkpoint(tmp_path):
    student = create_model("deit_tiny_patch8_32", embed_dim=16, depth=1, num_heads=2)
    config = {"student": "deit_tiny_patch8_32"}
    torch.save({"model": student.state_dict(), "config": config}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="student checkpoint"):
        load_teacher(tmp_path / "s.pt")


def test_shipped_name_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_files, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="not installed"):
        load_teacher("cifar10-teacher")


# ----------------------------------------------------------------------------- training pieces


def test_schedule_warms_up_then_decays_linearly():
    assert lr_factor(0, 100, 0.2, 0.2, 0.07) == pytest.approx(0.2)
    assert lr_factor(20, 100, 0.2, 0.2, 0.07) == pytest.approx(1.0)
    assert lr_factor(100, 100, 0.2, 0.2, 0.07) == pytest.approx(0.07)
    assert lr_factor(60, 100, 0.2, 0.2, 0.07) == pytest.approx(1 - 0.93 / 2)


def test_lookahead_averages_only_late_and_finishes_on_the_average():
    model = torch.nn.Linear(2, 2)
    look = Lookahead(model, ema=0.9, every=2, total=10)
    assert look.decay(1) == pytest.approx(0.81 * 1e-3) and look.decay(10) == pytest.approx(0.81)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    look.update(model, 10)
    torch.testing.assert_close(model.weight.detach(), start + 0.19)
    look.finish(model)
    torch.testing.assert_close(model.weight.detach(), start + 0.19)


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    x = torch.randn(64, 3, 8, 8)
    augment = AltFlipTranslate(64, translate=0, flip=True, seed=1)
    idx = torch.arange(64)
    even, odd = augment(x, idx, 0), augment(x, idx, 1)
    flipped_even = (even == x.flip(3)).flatten(1).all(1)
    flipped_odd = (odd == x.flip(3)).flatten(1).all(1)
    assert torch.equal(flipped_even, ~flipped_odd) and 16 < int(flipped_even.sum()) < 48
    assert torch.equal(augment(x, idx, 2), even)


def test_tta_averages_mirror_and_one_pixel_shifts():
    model = FastCNN(**TINY).eval()
    x = normalize(uint8_images(3), model.mean, model.std)
    with torch.no_grad():
        got = tta_logits(model, x)
        pad = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [x, pad[..., :32, :32], pad[..., 2:, 2:]]
        per_view = [(model(v) + model(v.flip(3))) / 2 for v in views]
    torch.testing.assert_close(got, per_view[0] / 2 + (per_view[1] + per_view[2]) / 4)


def test_whitening_layer_whitens_the_patches(cifar10):
    model = FastCNN(**TINY)
    x = normalize(cifar10.train_images[:500], model.mean, model.std)
    model.init_whitening(x)
    with torch.no_grad():
        out = F.conv2d(x, model.whiten.weight[:12]).permute(1, 0, 2, 3).reshape(12, -1)
    moment = out @ out.T / out.shape[1]
    torch.testing.assert_close(moment.diagonal()[:6], torch.ones(6), atol=0.02, rtol=0)
    off = moment - torch.diag(moment.diagonal())
    assert off.abs().max() < 1e-3
    assert not model.whiten.weight.requires_grad


def test_default_fastcnn_fits_the_shipping_limit():
    state = FastCNN().state_dict()
    assert sum(v.numel() * v.element_size() for v in state.values()) < 10 * 2**20


# ----------------------------------------------------------------------------- a real run

TINY_RUN = dict(
    epochs=2,
    batch_size=32,
    train_size=256,
    test_size=128,
    widths=(8, 16, 16),
    checkpoint_every=3,
    whiten_bias_epochs=1,
    threads=1,  # tiny tensors: one thread is faster, and immune to a busy neighbour
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cifar_dir, cifar10):
    out = tmp_path_factory.mktemp("teacher")
    config = TeacherConfig(data_dir=str(cifar_dir), **TINY_RUN)
    train_teacher(config, out, command=["test"])
    return out, cifar10


def test_a_teacher_run_writes_the_run_directory(trained_run):
    out, _ = trained_run
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "summary.json",
    }
    assert json.loads((out / "config.json").read_text())["widths"] == [8, 16, 16]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert {"lr", "train_loss", "test_top1", "test_top1_tta", "seconds", "img_per_s"} <= set(
        lines[0]
    )
    assert lines[0]["test_top1_tta"] is None and lines[1]["test_top1_tta"] is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_top1"] == lines[-1]["test_top1"]
    assert summary["command"] == ["test"] and summary["train_seconds"] > 0
    assert {"hardware", "wall_seconds", "test_top1_tta"} <= set(summary)


@pytest.mark.slow
def test_resumed_run_equals_the_uninterrupted_one(trained_run, tmp_path, cifar_dir):
    out, _ = trained_run
    config = TeacherConfig(data_dir=str(cifar_dir), **TINY_RUN)
    # Started and continued as a requeued job does: the same call, resume="auto".
    partial = train_teacher(config, tmp_path, resume="auto", max_steps=5)  # inside epoch 1 (8)
    assert partial == {"finished": False, "step": 5, "total_steps": 16}
    summary = train_teacher(config, tmp_path, resume="auto")
    full = torch.load(out / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for key, value in full["averaged"].items():
        assert torch.equal(value, resumed["averaged"][key]), key

    def accuracies(path):
        lines = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        return [(m["train_loss"], m["test_top1"], m["test_top1_tta"]) for m in lines]

    assert accuracies(tmp_path) == accuracies(out)
    assert summary["test_top1"] == json.loads((out / "summary.json").read_text())["test_top1"]
    again = train_teacher(None, tmp_path, resume=True)  # a finished run only re-summarises
    assert again["test_top1"] == summary["test_top1"] and again["steps"] == 16


def test_resume_refuses_a_different_config(trained_run, tmp_path, cifar_dir):
    out, _ = trained_run
    with pytest.raises(ValueError, match="lr"):
        train_teacher(TeacherConfig(data_dir=str(cifar_dir), **{**TINY_RUN, "lr": 0.1}), out, True)
    with pytest.raises(ConfigError, match="holds no run to resume"):
        train_teacher(None, tmp_path, resume=True)


def test_export_then_load_gives_the_same_teacher(trained_run, tmp_path):
    out, cifar10 = trained_run
    dest = export_teacher(out, tmp_path / "teacher.safetensors")
    exported = load_teacher(dest)
    original = load_teacher(out / "checkpoint.pt")
    for key, value in original.state_dict().items():
        assert torch.equal(value, exported.state_dict()[key])
    summary = json.loads((out / "summary.json").read_text())
    assert exported.meta["test_top1"] == summary["test_top1"]
    assert exported.mean == original.mean and exported.img_size == 32
    images, labels = cifar10.test_images[:128], cifar10.test_labels[:128]
    assert evaluate_teacher(exported, images, labels) == pytest.approx(summary["test_top1"])
