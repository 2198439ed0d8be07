"""Tests for the DeiT student models, the name registry and position-embedding resampling."""

import pytest
import torch

from deit.models import (
    NAME_SCHEME,
    VisionTransformer,
    adapt_pos_embed,
    create_model,
    list_models,
    parse_model_name,
    registry,
    resample_pos_embed,
)
from deit.models.registry import find_size, model_name, resolve_architecture

SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and lose a lot on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(distilled=True, **kw):
    """A two-block model at 32 px: fast, same code paths as the real sizes."""
    name = "deit_tiny_distilled_patch8_32" if distilled else "deit_tiny_patch8_32"
    return create_model(name, **{"embed_dim": 48, "depth": 2, "num_heads": 3, **kw})


def timm_keys(depth, distilled):
    """The state-dict keys of timm's (distilled) vision transformer, written out."""
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    if distilled:
        keys.append("dist_token")
    for i in range(depth):
        for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys += [f"blocks.{i}.{layer}.weight", f"blocks.{i}.{layer}.bias"]
    keys += ["norm.weight", "norm.bias", "head.weight", "head.bias"]
    if distilled:
        keys += ["head_dist.weight", "head_dist.bias"]
    return keys


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("distilled", [False, True])
@pytest.mark.parametrize("patch,img", [(4, 32), (8, 32), (2, 32), (16, 224), (14, 224), (32, 384)])
def test_every_name_in_the_scheme_builds(size, distilled, patch, img):
    name = f"deit_{size}{'_distilled' if distilled else ''}_patch{patch}_{img}"
    dim, heads = SIZES[size]
    assert parse_model_name(name) == dict(
        embed_dim=dim,
        depth=12,
        num_heads=heads,
        mlp_ratio=4.0,
        distilled=distilled,
        patch_size=patch,
        img_size=img,
        num_classes=10,
    )
    with torch.device("meta"):
        model = create_model(name)
    assert model.distilled is distilled
    assert model.pos_embed.shape == (1, (img // patch) ** 2 + 1 + distilled, dim)
    assert model.head.out_features == 10


@pytest.mark.parametrize(
    "name",
    [
        "deit_huge_patch16_224",
        "deit_tiny_patch5_32",
        "deit_tiny_patch0_32",
        "deit_tiny_patch16",
        "deit_tiny_distilled_patch4_32_extra",
        "vit_tiny_patch16_224",
        "deit_distilled_tiny_patch16_224",
        "",
        None,
    ],
)
def test_bad_names_raise_with_the_scheme(name):
    with pytest.raises(ValueError, match="expected deit_"):
        create_model(name)


def test_list_models_are_valid_and_overrides_apply():
    names = list_models()
    assert "deit_tiny_distilled_patch4_32" in names and len(names) == 4 * 5
    assert "deit_micro_distilled_patch4_32" in names and "deit_nano_patch16_224" in names
    for name in names:
        parse_model_name(name)
    assert "P dividing IMG" in NAME_SCHEME
    model = create_model("deit_tiny_patch4_32", embed_dim=64, depth=3, num_heads=2, mlp_ratio=2)
    assert len(model.blocks) == 3 and model.blocks[0].mlp.fc1.out_features == 128
    assert model.blocks[0].attn.num_heads == 2
    model = create_model("deit_tiny_patch4_32", img_size=64, patch_size=8, num_classes=100)
    assert model.patch_embed.grid_size == (8, 8) and model.head.out_features == 100
    with pytest.raises(TypeError, match="unknown overrides"):
        create_model("deit_tiny_patch4_32", num_class=10)
    with pytest.raises(ValueError, match="must divide"):
        create_model("deit_tiny_patch4_32", patch_size=5)


# The project's CPU students: (width, depth, heads), parameters of the distilled one at
# patch 4, 32 px, 10 classes.
CPU_SIZES = {"micro": (128, 6, 4, 1_207_444), "nano": (64, 4, 2, 208_852)}


@pytest.mark.parametrize("size", CPU_SIZES)
def test_the_cpu_sizes_parse_and_build_with_their_width_depth_and_heads(size):
    dim, depth, heads, count = CPU_SIZES[size]
    name = f"deit_{size}_distilled_patch4_32"
    assert parse_model_name(name) == dict(
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.0,
        distilled=True,
        patch_size=4,
        img_size=32,
        num_classes=10,
    )
    with torch.device("meta"):
        model = create_model(name)
    assert model.embed_dim == dim and len(model.blocks) == depth
    assert model.blocks[0].attn.num_heads == heads
    assert model.blocks[0].mlp.fc1.out_features == 4 * dim
    assert sum(p.numel() for p in model.parameters()) == count


def test_the_papers_sizes_are_unchanged():
    assert {k: registry.SIZES[k] for k in ("tiny", "small", "base")} == {
        "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
        "small": dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
        "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    }


@pytest.mark.parametrize("size", registry.SIZES)
@pytest.mark.parametrize("distilled", [False, True])
@pytest.mark.parametrize("patch,img", [(4, 32), (8, 48), (16, 224)])
def test_model_name_round_trips_through_parse_model_name(size, distilled, patch, img):
    name = model_name(size, distilled, patch, img)
    assert name == f"deit_{size}{'_distilled' if distilled else ''}_patch{patch}_{img}"
    parsed = parse_model_name(name)
    assert (parsed["distilled"], parsed["patch_size"], parsed["img_size"]) == (
        distilled,
        patch,
        img,
    )
    assert {k: parsed[k] for k in registry.SIZES[size]} == registry.SIZES[size]
    assert resolve_architecture(name)["size"] == size


def test_model_name_rejects_unknown_sizes_and_bad_patches():
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        model_name("huge", False, 4, 32)
    with pytest.raises(ValueError, match="does not divide"):
        model_name("micro", True, 5, 32)


def test_find_size_matches_exactly_or_not_at_all():
    assert find_size(192, 12, 3) == "tiny" and find_size(768, 12, 12, 4.0) == "base"
    assert find_size(128, 6, 4) == "micro" and find_size(64, 4, 2) == "nano"
    assert find_size(128, 6, 4, mlp_ratio=2.0) is None
    assert find_size(128, 6, 2) is None and find_size(192, 6, 3) is None


def test_resolve_architecture_says_what_a_name_and_overrides_build():
    old = dict(embed_dim=128, depth=6, num_heads=4)
    arch = resolve_architecture("deit_tiny_distilled_patch4_32", num_classes=10, **old)
    assert arch == {
        "name": "deit_tiny_distilled_patch4_32",
        "size": "micro",
        "embed_dim": 128,
        "depth": 6,
        "num_heads": 4,
        "mlp_ratio": 4.0,
        "patch_size": 4,
        "img_size": 32,
        "distilled": True,
    }
    new = resolve_architecture("deit_micro_distilled_patch4_32")
    assert new == {**arch, "name": "deit_micro_distilled_patch4_32"}
    custom = resolve_architecture("deit_nano_patch8_48", depth=3, img_size=64)
    assert custom["size"] is None and (custom["depth"], custom["img_size"]) == (3, 64)
    assert custom["distilled"] is False and custom["embed_dim"] == 64
    with pytest.raises(TypeError, match="unknown overrides"):
        resolve_architecture("deit_tiny_patch4_32", width=3)
    with pytest.raises(ValueError, match="expected deit_"):
        resolve_architecture("deit_huge_patch4_32")


@pytest.mark.parametrize(
    "new,sizes",
    [
        ("deit_micro_distilled_patch4_32", dict(embed_dim=128, depth=6, num_heads=4)),
        ("deit_micro_patch4_32", dict(embed_dim=128, depth=6, num_heads=4)),
        ("deit_nano_distilled_patch4_32", dict(embed_dim=64, depth=4, num_heads=2)),
    ],
)
def test_the_old_name_with_overrides_is_the_new_name_weight_for_weight(new, sizes):
    """Runs recorded as deit_tiny_* + sizes rebuild, and initialise, as the named size."""
    old = new.replace("micro", "tiny").replace("nano", "tiny")
    torch.manual_seed(0)
    before = create_model(old, **sizes).state_dict()
    torch.manual_seed(0)
    after = create_model(new).state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


# --- architecture ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,count",
    [
        ("deit_tiny_patch16_224", 5_717_416),
        ("deit_tiny_distilled_patch16_224", 5_910_800),
        ("deit_small_distilled_patch16_224", 22_436_432),
        ("deit_base_distilled_patch16_224", 87_338_192),
    ],
)
def test_parameter_counts_match_the_paper_models(name, count):
    with torch.device("meta"):  # the real module, without allocating or initialising weights
        model = create_model(name, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("distilled", [False, True])
def test_state_dict_keys_are_timms(distilled):
    with torch.device("meta"):
        model = create_model(f"deit_tiny{'_distilled' if distilled else ''}_patch16_224")
    keys = timm_keys(12, distilled)
    assert len(keys) == len(set(keys))
    assert set(model.state_dict()) == set(keys)
    sd = model.state_dict()
    assert sd["pos_embed"].shape == (1, 196 + 1 + distilled, 192)
    assert sd["cls_token"].shape == (1, 1, 192)
    assert sd["blocks.0.attn.qkv.weight"].shape == (576, 192)
    assert sd["blocks.0.attn.qkv.bias"].shape == (576,)
    assert sd["patch_embed.proj.weight"].shape == (192, 3, 16, 16)
    if distilled:
        assert sd["dist_token"].shape == (1, 1, 192)
        assert sd["head_dist.weight"].shape == (10, 192)


def test_initialisation_follows_deit():
    torch.manual_seed(0)
    model = create_model("deit_tiny_distilled_patch4_32")
    for p in (model.cls_token, model.dist_token, model.pos_embed, model.blocks[0].mlp.fc1.weight):
        assert 0.015 < p.std().item() < 0.025
    assert torch.all(model.blocks[3].attn.qkv.bias == 0) and torch.all(model.head.bias == 0)
    assert torch.all(model.norm.weight == 1) and torch.all(model.blocks[0].norm1.bias == 0)
    assert model.norm.eps == 1e-6 and model.blocks[0].norm2.eps == 1e-6
    assert model.no_weight_decay() == {"pos_embed", "cls_token", "dist_token"}


def test_matches_timm_when_available():
    timm = pytest.importorskip("timm")
    ours = create_model("deit_tiny_distilled_patch4_32").eval()
    theirs = timm.create_model(
        "deit_tiny_distilled_patch16_224", img_size=32, patch_size=4, num_classes=10
    ).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


# --- forward and heads -------------------------------------------------------------------


def test_output_shapes_plain_and_distilled():
    x = torch.randn(2, 3, 32, 32)
    plain = create_model("deit_tiny_patch4_32")
    assert plain(x).shape == (2, 10)
    assert plain.eval()(x).shape == (2, 10)
    assert plain.forward_features(x).shape == (2, 1 + 64, 192)

    model = create_model("deit_tiny_distilled_patch4_32", num_classes=7)
    cls, dist = model.train()(x)
    assert cls.shape == dist.shape == (2, 7)
    assert model.eval()(x).shape == (2, 7)
    assert model.forward_features(x).shape == (2, 2 + 64, 192)
    with pytest.raises(ValueError, match="32×32"):
        model(torch.randn(2, 3, 28, 28))


def test_dynamic_img_size_takes_smaller_grids_through_a_resampled_position_embedding():
    torch.manual_seed(0)
    fixed = create_model("deit_tiny_distilled_patch4_32", embed_dim=32, depth=2, num_heads=2)
    dynamic = create_model(
        "deit_tiny_distilled_patch4_32", embed_dim=32, depth=2, num_heads=2, dynamic_img_size=True
    )
    dynamic.load_state_dict(fixed.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(dynamic.eval()(x), fixed.eval()(x))
    small = torch.randn(2, 3, 16, 16)
    assert dynamic.forward_features(small).shape == (2, 2 + 16, 32)
    cls, dist = dynamic.train()(small)
    (cls.sum() + dist.sum()).backward()
    assert dynamic.pos_embed.grad is not None and dynamic.pos_embed.grad[:, 2:].abs().sum() > 0
    with pytest.raises(ValueError, match="multiples of 4"):
        dynamic(torch.randn(2, 3, 18, 18))
    with pytest.raises(ValueError, match="32×32"):
        fixed(small)


def test_head_selection():
    torch.manual_seed(0)
    model = small_model().eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        cls, dist = model(x, head="both")
        assert not torch.allclose(cls, dist)
        assert model.eval_head == "avg"
        torch.testing.assert_close(model(x), (cls + dist) / 2)
        model.eval_head = "cls"
        torch.testing.assert_close(model(x), cls)
        model.eval_head = "dist"
        torch.testing.assert_close(model(x), dist)
        torch.testing.assert_close(model(x, head="avg"), (cls + dist) / 2)
        model.train()  # training returns both heads whatever eval_head says
        out = model(x)
        assert isinstance(out, tuple) and len(out) == 2
        torch.testing.assert_close(model(x, head="cls"), cls)
    for bad in ("both", "mean", None):
        with pytest.raises(ValueError, match="head"):
            model.eval_head = bad
    with pytest.raises(ValueError, match="unknown head"):
        model(x, head="mean")

    plain = small_model(distilled=False)
    assert plain.eval_head == "cls"
    for head in ("dist", "avg", "both"):
        with pytest.raises(ValueError, match="distillation token"):
            plain(x, head=head)
    with pytest.raises(ValueError, match="distillation token"):
        plain.eval_head = "avg"
    assert plain(x, head="cls").shape == (3, 10)


def test_both_tokens_receive_gradients():
    model = small_model().train()
    cls, dist = model(torch.randn(2, 3, 32, 32))
    (cls.logsumexp(1) + dist.logsumexp(1)).sum().backward()
    for p in (model.cls_token, model.dist_token, model.pos_embed, model.head_dist.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_drop_path_only_in_training_and_eval_is_deterministic():
    model = small_model(drop_path_rate=0.5, depth=4)
    assert [round(b.drop_path1.rate, 4) for b in model.blocks] == [0.0, 0.1667, 0.3333, 0.5]
    x = torch.randn(8, 3, 32, 32)
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x, head="cls")
        torch.manual_seed(2)
        b = model(x, head="cls")
        assert not torch.allclose(a, b)
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        model.train()
        for block in model.blocks:  # no drop path left: training forward is deterministic too
            block.drop_path1.rate = block.drop_path2.rate = 0.0
        torch.testing.assert_close(model(x, head="cls"), model.eval()(x, head="cls"))


def test_attention_maps_are_distributions():
    model = small_model().eval()
    maps = model.attention_maps(torch.randn(2, 3, 32, 32))
    assert len(maps) == 2 and maps[0].shape == (2, 3, 18, 18)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 3, 18))


# --- position-embedding resampling ---------------------------------------------------------


def ramp_pos_embed(prefix, side, dim=4):
    """Position embedding whose grid part is linear in row and column."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    slopes = torch.randn(2, dim)
    grid = rows.reshape(-1, 1) * slopes[0] + cols.reshape(-1, 1) * slopes[1] + 0.5
    return torch.cat([torch.randn(prefix, dim), grid]).unsqueeze(0), slopes


def test_resample_identity_at_the_same_grid():
    pos, _ = ramp_pos_embed(2, 8)
    assert torch.equal(resample_pos_embed(pos, (8, 8), 2), pos)


@pytest.mark.parametrize("prefix", [1, 2])
@pytest.mark.parametrize("new_side", [4, 12, 16])
def test_resample_keeps_prefix_and_a_ramp_stays_a_ramp(prefix, new_side):
    side = 8
    pos, slopes = ramp_pos_embed(prefix, side)
    out = resample_pos_embed(pos, (new_side, new_side), prefix)
    assert out.shape == (1, prefix + new_side**2, pos.shape[-1])
    assert torch.equal(out[:, :prefix], pos[:, :prefix])
    # align_corners=False: output pixel i samples input coordinate (i + .5)·side/new_side − .5.
    scale = side / new_side
    src = (torch.arange(new_side) + 0.5) * scale - 0.5
    rows, cols = torch.meshgrid(src, src, indexing="ij")
    expected = rows.reshape(-1, 1) * slopes[0] + cols.reshape(-1, 1) * slopes[1] + 0.5
    got = out[0, prefix:].reshape(new_side, new_side, -1)
    expected = expected.reshape(new_side, new_side, -1)
    # PyTorch's bicubic kernel (a = -0.75) reproduces a ramp away from the clamped border up
    # to a ripple of 3/64 per unit slope; the border (two input pixels) is not checked.
    margin = -(-2 // scale) if scale >= 1 else int(2 / scale)
    inner = slice(int(margin), new_side - int(margin))
    ripple = 3 / 64 * slopes.abs().sum(0) + 1e-5
    assert torch.all((got - expected)[inner, inner].abs() <= ripple)


def test_resample_non_square_and_errors():
    pos = torch.randn(1, 1 + 4 * 6, 8)
    assert resample_pos_embed(pos, (8, 12), 1, old_grid=(4, 6)).shape == (1, 1 + 96, 8)
    with pytest.raises(ValueError, match="square"):
        resample_pos_embed(pos, (8, 8), 1)
    with pytest.raises(ValueError, match="does not match"):
        resample_pos_embed(pos, (8, 8), 1, old_grid=(5, 5))


def test_resampled_weights_load_into_a_larger_grid():
    small = small_model()
    large = small_model(img_size=64)
    state = adapt_pos_embed(small.state_dict(), large)
    assert state["pos_embed"].shape == large.pos_embed.shape == (1, 2 + 64, 48)
    torch.testing.assert_close(
        state["pos_embed"], resample_pos_embed(small.pos_embed.detach(), (8, 8), 2)
    )
    assert small.state_dict()["pos_embed"].shape == (1, 2 + 16, 48)  # input left as it was
    large.load_state_dict(state, strict=True)
    assert adapt_pos_embed(state, large)["pos_embed"] is state["pos_embed"]
    assert isinstance(large, VisionTransformer)
    assert large.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


# ----------------------------------------------------------------------------- token dropping


def test_keep_tokens_keeps_the_prefix_and_a_random_ordered_subset_of_patches():
    from deit.models.deit import keep_tokens

    x = torch.arange(2 * 10 * 3, dtype=torch.float).view(2, 10, 3)  # 2 prefix + 8 patches
    torch.manual_seed(0)
    kept = keep_tokens(x, num_prefix_tokens=2, keep=0.5)
    assert kept.shape == (2, 2 + 4, 3)
    assert torch.equal(kept[:, :2], x[:, :2])
    for image in range(2):
        rows = [int(r[0]) // 3 - image * 10 for r in kept[image, 2:]]
        assert rows == sorted(rows) and len(set(rows)) == 4 and min(rows) >= 2


def test_training_drops_tokens_and_evaluation_sees_every_token():
    torch.manual_seed(0)
    dropped = create_model("deit_nano_distilled_patch4_32", token_keep=0.25)
    plain = create_model("deit_nano_distilled_patch4_32")
    plain.load_state_dict(dropped.state_dict())  # same parameters: nothing added
    lengths = []
    dropped.blocks[0].register_forward_hook(lambda m, i, o: lengths.append(o.shape[1]))
    x = torch.randn(2, 3, 32, 32)
    dropped.train()(x)
    assert lengths == [2 + 16]  # 64 patches, a quarter kept, plus cls and dist
    dropped.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(dropped(x), plain(x))
    assert lengths[-1] == 2 + 64


def test_a_token_dropped_checkpoint_loads_into_a_plain_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("deit_nano_distilled_patch4_32", token_keep=0.5).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cls, dist = model(torch.randn(4, 3, 32, 32))
    (cls.sum() + dist.sum()).backward()
    optimizer.step()
    torch.save({"model": model.state_dict()}, tmp_path / "dropped.pt")
    plain = create_model("deit_nano_distilled_patch4_32")
    plain.load_state_dict(torch.load(tmp_path / "dropped.pt", weights_only=True)["model"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), model.eval()(x))
