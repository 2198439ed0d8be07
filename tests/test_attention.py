"""Attention of the class and distillation tokens: rollout, maps per token, the figure."""

import pytest
import torch

from deit.attention import attention_figure_data, attention_rollout, token_attention
from deit.cli import main
from deit.models import create_model


def test_rollout_of_uniform_attention_is_uniform_and_rows_stay_distributions():
    t = 5
    uniform = torch.full((1, 2, t, t), 1 / t)
    rolled = attention_rollout([uniform, uniform, uniform])
    assert torch.allclose(rolled.sum(-1), torch.ones(1, t))
    one = attention_rollout([uniform])
    assert torch.allclose(one, 0.5 / t + 0.5 * torch.eye(t))


def test_rollout_multiplies_through_the_blocks_in_order():
    a = torch.softmax(torch.randn(1, 3, 4, 4), -1)
    b = torch.softmax(torch.randn(1, 3, 4, 4), -1)

    def residual(x):
        x = 0.5 * x.mean(1) + 0.5 * torch.eye(4)
        return x / x.sum(-1, keepdim=True)

    assert torch.allclose(attention_rollout([a, b]), residual(b) @ residual(a), atol=1e-6)


def test_token_maps_cover_the_patch_grid_of_each_token():
    torch.manual_seed(0)
    model = create_model("deit_tiny_distilled_patch4_32", embed_dim=32, depth=2, num_heads=2)
    maps = token_attention(model, torch.randn(3, 3, 32, 32))
    assert set(maps) == {"cls last", "cls rollout", "dist last", "dist rollout"}
    for grid in maps.values():
        assert grid.shape == (3, 8, 8)
        assert torch.allclose(grid.sum((1, 2)), torch.ones(3))
    plain = create_model("deit_tiny_patch4_32", embed_dim=32, depth=2, num_heads=2)
    assert set(token_attention(plain, torch.randn(1, 3, 32, 32))) == {"cls last", "cls rollout"}


@pytest.fixture(scope="module")
def student(cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    args = ["train", "--preset", "smoke", "--out", str(out), "--epochs", "1", "--data-dir"]
    tiny = ["--set", "train_size=128", "--set", "test_size=64", "--set", "threads=1"]
    assert main([*args, str(cifar_dir), *tiny]) == 0
    return out / "checkpoint.pt"


def test_figure_data_has_every_head_and_the_teacher(student, cifar_dir):
    figure = attention_figure_data(student, images=3, data_dir=str(cifar_dir))
    assert set(figure["predictions"]) == {"cls", "dist", "avg", "teacher"}
    assert figure["pixels"].shape == (3, 3, 32, 32) and len(figure["labels"]) == 3
    assert figure["maps"]["dist rollout"].shape == (3, 8, 8)


def test_deit_attention_writes_a_png(student, cifar_dir, tmp_path, capsys):
    out = tmp_path / "attention.png"
    data = ["--data-dir", str(cifar_dir)]
    assert main(["attention", "--checkpoint", str(student), "--out", str(out), "--images", "2",
                 *data]) == 0  # fmt: skip
    assert out.read_bytes()[:4] == b"\x89PNG"
    code = main(["attention", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)])
    assert code == 2 and "no checkpoint" in capsys.readouterr().err
