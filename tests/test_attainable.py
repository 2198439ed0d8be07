"""The attainable ceiling: a step's own products are recorded with their layouts and replayed."""

import torch
from torch import nn

from deit.attainable import record_products, replay_seconds
from deit.models import create_model

aten = torch.ops.aten


def test_a_linear_step_records_its_forward_and_backward_products():
    layer = nn.Linear(16, 8)
    x = torch.randn(4, 16)

    def step():
        layer.zero_grad()
        layer(x).sum().backward()

    calls = record_products(step)
    funcs = sorted(str(func) for func, *_ in calls)
    # forward addmm; backward: the input needs no gradient, so only the weight's mm
    assert funcs == ["aten.addmm.default", "aten.mm.default"]
    addmm = next(c for c in calls if c[0] is aten.addmm.default)
    shapes = [leaf[0] for leaf in addmm[1] if isinstance(leaf, tuple) and len(leaf) == 4]
    assert (4, 16) in shapes and (16, 8) in shapes  # x and the transposed weight


def test_repeated_layers_are_one_layout_counted_twice():
    blocks = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    calls = record_products(lambda: blocks(torch.randn(3, 8)))
    assert [count for *_, count in calls] == [2]


def test_a_student_step_replays_its_attention_and_products_in_less_than_the_step():
    model = create_model("deit_tiny_distilled_patch4_32", embed_dim=32, depth=1, num_heads=2)
    x = torch.randn(4, 3, 32, 32)
    calls = record_products(lambda: sum(h.sum() for h in model(x)).backward())
    names = {str(func) for func, *_ in calls}
    assert any("scaled_dot_product" in n for n in names)  # fused attention, both ways
    assert any("convolution_backward" in n for n in names)  # the patch embedding
    assert replay_seconds(calls, torch.device("cpu"), warmup=1, repeats=1) > 0


def test_an_inference_step_records_its_products_once():
    model = create_model("deit_tiny_distilled_patch4_32", embed_dim=32, depth=2, num_heads=2)
    model.eval()

    def step():
        with torch.inference_mode():
            model(torch.randn(2, 3, 32, 32))

    calls = record_products(step)
    per_func = {}
    for func, *_, count in calls:
        per_func[str(func).split(".")[1]] = per_func.get(str(func).split(".")[1], 0) + count
    # 2 blocks × (qkv, proj, fc1, fc2) + 2 heads (aten's or oneDNN's, deit.models.linear);
    # one attention per block; the patch conv
    linears = ("linear", "addmm", "_linear_pointwise")
    assert sum(per_func.get(name, 0) for name in linears) == 2 * 4 + 2
    assert sum(v for k, v in per_func.items() if "scaled_dot_product" in k) == 2
    assert sum(v for k, v in per_func.items() if "conv" in k) == 1
