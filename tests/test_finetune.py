"""Fine-tuning: reading official-layout and own checkpoints, adapting them, a real short run."""

import json

import pytest
import torch

from deit.checkpoint import CheckpointError
from deit.cli import main
from deit.config import ConfigError, from_preset
from deit.evaluation import evaluate as evaluate_checkpoint
from deit.models import create_model
from deit.pretrained import (
    infer_architecture,
    load_pretrained,
    read_pretrained,
    resample_patch_embed,
    student_name,
)
from deit.transfer import finetune_config


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official-layout DeiT-Ti distilled checkpoint: random weights, real names and shapes."""
    torch.manual_seed(0)
    model = create_model("deit_tiny_distilled_patch16_224", num_classes=1000)
    path = tmp_path_factory.mktemp("official") / "deit_tiny_distilled_patch16_224.pth"
    torch.save({"model": model.state_dict(), "epoch": 299}, path)
    return path, model.state_dict()


def test_the_architecture_of_an_official_checkpoint_is_read_from_its_shapes(official):
    path, _ = official
    _, arch = read_pretrained(path)
    assert arch == {
        "embed_dim": 192, "depth": 12, "num_heads": 3, "patch_size": 16, "img_size": 224,
        "distilled": True, "num_classes": 1000,
    }  # fmt: skip


def test_the_student_is_named_for_the_registered_size_it_is():
    arch = {"embed_dim": 128, "depth": 6, "num_heads": 4, "distilled": True}
    assert student_name(arch, 48, 4) == "deit_micro_distilled_patch4_48"  # a cpu-proxy run
    arch = {"embed_dim": 384, "depth": 12, "num_heads": 6, "distilled": False}
    assert student_name(arch, 32, 4) == "deit_small_patch4_32"
    arch = {"embed_dim": 128, "depth": 3, "num_heads": 4, "distilled": True}  # no size: tiny
    assert student_name(arch, 32, 4) == "deit_tiny_distilled_patch4_32"


def test_loading_keeps_the_body_and_replaces_heads_of_another_class_count(official):
    _, state = official
    model = create_model("deit_tiny_distilled_patch16_224", num_classes=10)
    replaced = load_pretrained(model, state)
    assert replaced == ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    ours = model.state_dict()
    assert torch.equal(ours["blocks.11.mlp.fc2.weight"], state["blocks.11.mlp.fc2.weight"])
    assert torch.equal(ours["dist_token"], state["dist_token"])
    same = create_model("deit_tiny_distilled_patch16_224", num_classes=1000)
    assert load_pretrained(same, state) == []


def test_a_new_grid_resamples_the_position_embedding_keeping_the_token_entries(official):
    _, state = official
    model = create_model("deit_tiny_distilled_patch16_32", embed_dim=192, num_classes=10)
    load_pretrained(model, state)
    assert model.pos_embed.shape == (1, 2 + 4, 192)
    assert torch.equal(model.pos_embed[:, :2], state["pos_embed"][:, :2])


def test_a_new_patch_size_resamples_the_projection_keeping_flat_patches():
    weight = torch.randn(8, 3, 4, 4)
    flat = torch.ones(1, 3, 4, 4)
    small = resample_patch_embed(weight, 2)
    assert small.shape == (8, 3, 2, 2)
    original = (weight * flat).sum((1, 2, 3))
    smaller = (small * torch.ones(1, 3, 2, 2)).sum((1, 2, 3))
    assert torch.allclose(original, smaller, rtol=0.15, atol=0.3)
    assert resample_patch_embed(weight, 4) is weight


def test_bad_checkpoints_and_sizes_fail_clearly(tmp_path, official):
    path = tmp_path / "not_deit.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="not a DeiT checkpoint"):
        read_pretrained(path)
    with pytest.raises(ConfigError, match="does not divide"):
        finetune_config(from_preset("smoke"), official[0], img_size=40)
    state = {"cls_token": torch.zeros(1, 1, 8), "pos_embed": torch.zeros(1, 1 + 5, 8)}
    state["patch_embed.proj.weight"] = torch.zeros(8, 3, 4, 4)
    with pytest.raises(CheckpointError, match="square"):
        infer_architecture(state)


@pytest.mark.slow
def test_official_checkpoint_fine_tunes_at_224_px_on_cifar(official, cifar_dir, tmp_path):
    path, _ = official
    base = from_preset(
        "smoke", data_dir=str(cifar_dir), epochs=1, batch_size=4, train_size=10, test_size=8,
        threads=1,
    )  # fmt: skip
    config = finetune_config(base, path, img_size=224)
    assert config.student == "deit_tiny_distilled_patch16_224" and config.depth == 12
    from deit.trainer import train

    summary = train(config, tmp_path / "run")
    assert set(summary["test_top1"]) == {"cls", "dist", "avg"}
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["model"]["head.weight"].shape == (10, 192)


@pytest.mark.slow
def test_deit_finetune_takes_an_own_checkpoint_to_48_px(cifar_dir, tmp_path):
    data = ["--data-dir", str(cifar_dir)]
    tiny = ["--set", "train_size=128", "--set", "test_size=64", "--set", "threads=1"]
    # Patch 8: at 48 px 36 tokens, not 144, for the evaluation on the whole test set below.
    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "a"), "--epochs", "1",
                 "--student", "deit_nano_distilled_patch8_32", *tiny, *data]) == 0  # fmt: skip
    source = tmp_path / "a" / "checkpoint.pt"  # named by its run directory
    args = ["finetune", "--checkpoint", str(tmp_path / "a"), "--img-size", "48", "--epochs", "1"]
    assert main([*args, "--out", str(tmp_path / "b"), "--distillation", "hard", *tiny, *data]) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["student"] == "deit_nano_distilled_patch8_48"  # the source's size and patch
    assert (config["embed_dim"], config["depth"], config["num_heads"]) == (64, 4, 2)
    assert config["init_from"] == str(source) and config["img_size_schedule"] == []
    result = evaluate_checkpoint(tmp_path / "b" / "checkpoint.pt", str(cifar_dir))  # at 48 px
    assert result["kind"] == "student" and set(result["heads"]) == {"cls", "dist", "avg"}
    bad = main([*args[:-2], "--out", str(tmp_path / "c"), "--num-classes", "100", *data])
    assert bad == 2


def test_finetune_refuses_a_class_count_the_data_set_lacks_before_any_work(tmp_path):
    import dataclasses

    import deit

    model = deit.create_model("deit_nano_distilled_patch4_32")
    config = dataclasses.asdict(from_preset("smoke"))
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "nano.pt")
    with pytest.raises(ConfigError, match="num_classes 100: cifar10 has 10 classes"):
        deit.finetune(tmp_path / "nano.pt", 48, tmp_path / "run", num_classes=100)
    assert not (tmp_path / "run").exists()
