"""Any timm model as a teacher (teacher_arch=timm:NAME): its own inputs, class checks, a run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deit.cli import main
from deit.config import ConfigError
from deit.data.augment import dataset_stats, normalize
from deit.models.teacher_files import check_teacher_fits, load_teacher
from deit.models.teachers import Teacher

try:
    import timm
except ImportError as err:  # timm needs torchvision, which this project does not install
    timm, TIMM_MISSING = None, f"timm is not importable ({err}): pip install 'deit[timm]'"
else:
    TIMM_MISSING = ""
needs_timm = pytest.mark.skipif(timm is None, reason=TIMM_MISSING)
CLASSES = ["bee", "cow", "owl"]
SMALL_RUN = ["--set", "dataset=folder", "--set", "train_size=0", "--set", "test_size=0",
             "--set", "batch_size=8", "--set", "workers=0", "--epochs", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """ROOT/{train,val}/<class>/ with 8 and 2 random 40×36 PNGs per class."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def timm_weights(path, name="resnet18", num_classes=3, **settings):
    """A random-init timm model saved as a state dict, with settings beside it if given."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    torch.save({"model": model.state_dict(), **settings}, path)
    return model.eval()


@pytest.mark.skipif(timm is not None, reason="timm is installed")
def test_without_timm_a_timm_teacher_is_one_line_naming_the_pip_install(tmp_path, folder, capsys):
    torch.save({"fc.weight": torch.zeros(3, 8)}, tmp_path / "t.pth")
    with pytest.raises(ConfigError, match=r"pip install 'deit\[timm\]'"):
        load_teacher(tmp_path / "t.pth", arch="timm:resnet18")
    code = main(["train", "--preset", "smoke", "--distillation", "hard", "--teacher",
                 str(tmp_path / "t.pth"), "--set", "teacher_arch=timm:resnet18", *SMALL_RUN,
                 "--data-dir", str(folder), "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'deit[timm]'" in err[0]
    assert not (tmp_path / "run").exists()


@needs_timm
def test_normalisation_and_resolution_are_timms_or_the_files(tmp_path):
    timm_weights(tmp_path / "plain.pth")
    own = load_teacher(tmp_path / "plain.pth", arch="timm:resnet18")
    cfg = timm.create_model("resnet18").pretrained_cfg
    assert own.img_size == cfg["input_size"][-1] == 224
    assert own.mean == tuple(cfg["mean"]) and own.std == tuple(cfg["std"])
    timm_weights(tmp_path / "set.pth", img_size=48, mean=[0.5] * 3, std=[0.25] * 3,
                 classes=CLASSES)  # fmt: skip
    stored = load_teacher(tmp_path / "set.pth", arch="timm:resnet18")
    assert (stored.img_size, stored.mean, stored.std) == (48, (0.5,) * 3, (0.25,) * 3)
    assert stored.meta["classes"] == CLASSES and stored.kwargs == {"num_classes": 3}


@needs_timm
@pytest.mark.slow  # two RegNets built: 3-7 s on a 2-core CPU
def test_the_teacher_sees_its_own_inputs(tmp_path):
    """A CIFAR-normalised student batch reaches the timm model in its own statistics and size."""
    model = timm_weights(tmp_path / "t.pth", name="regnety_002", img_size=32)
    student_stats = dataset_stats("cifar10")
    teacher = Teacher(load_teacher(tmp_path / "t.pth", arch="timm:regnety_002"),
                      input_mean=student_stats[0], input_std=student_stats[1])  # fmt: skip
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    x = normalize(images, *student_stats)
    cfg = model.pretrained_cfg
    assert torch.allclose(teacher.adapt(x), normalize(images, cfg["mean"], cfg["std"]), atol=1e-5)
    with torch.inference_mode():
        assert torch.allclose(teacher(x), model(teacher.adapt(x)), atol=1e-3)
    timm_weights(tmp_path / "224.pth", name="regnety_002")  # no size stored: timm's 224 px
    at_224 = Teacher(load_teacher(tmp_path / "224.pth", arch="timm:regnety_002"),
                     input_mean=student_stats[0], input_std=student_stats[1])  # fmt: skip
    assert at_224.adapt(x).shape == (4, 3, 224, 224)


@needs_timm
def test_class_count_and_names_are_checked(tmp_path):
    timm_weights(tmp_path / "five.pth", num_classes=5)
    with pytest.raises(ConfigError, match="predicts 5 classes but the data set has 3"):
        check_teacher_fits(load_teacher(tmp_path / "five.pth", arch="timm:resnet18"), 3, CLASSES,
                           "five.pth")  # fmt: skip
    timm_weights(tmp_path / "named.pth", classes=["owl", "cow", "bee"])
    with pytest.raises(ConfigError, match="another order or set"):
        check_teacher_fits(load_teacher(tmp_path / "named.pth", arch="timm:resnet18"), 3, CLASSES,
                           "named.pth")  # fmt: skip
    with pytest.raises(ConfigError, match="timm has no model"):
        load_teacher(tmp_path / "five.pth", arch="timm:no_such_net")


@needs_timm
@pytest.mark.slow  # a one-epoch run: about 3 s on a 2-core CPU
def test_a_timm_teacher_distils_a_smoke_run(tmp_path, folder):
    timm_weights(tmp_path / "r18.pth", img_size=64, classes=CLASSES)
    code = main(["train", "--preset", "smoke", "--student", "deit_nano_distilled_patch4_32",
                 "--distillation", "hard", "--teacher", str(tmp_path / "r18.pth"), "--set",
                 "teacher_arch=timm:resnet18", *SMALL_RUN, "--data-dir", str(folder),
                 "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_top1"]["avg"] >= 0
