"""The students' linear layers: oneDNN or the BLAS on the CPU, the same layer either way."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deit.bench import count_flops
from deit.config import ConfigError, TrainConfig, validate
from deit.hardware import hardware
from deit.models import create_model
from deit.models import linear as linear_module
from deit.models.linear import Linear, cpu_linear, set_cpu_linear, using_cpu_linear

needs_onednn = pytest.mark.skipif(
    not linear_module.onednn_available(), reason="this PyTorch has no oneDNN"
)


def _grads(layer, x, grad):
    x = x.detach().requires_grad_(True)
    layer.zero_grad()
    out = layer(x)
    out.backward(grad)
    return out, x.grad, layer.weight.grad, layer.bias.grad


@needs_onednn
@pytest.mark.parametrize("shape", [(6, 24), (3, 5, 24)])
def test_onednn_output_and_gradients_match_the_blas(shape):
    torch.manual_seed(0)
    layer = Linear(24, 40)
    x, grad = torch.randn(*shape), torch.randn(*shape[:-1], 40)
    with using_cpu_linear("blas"):
        expected = _grads(layer, x, grad)
    with using_cpu_linear("onednn"):
        got = _grads(layer, x, grad)
        assert _grads(layer, x, grad)[0].grad_fn.name().endswith("_OneDNNLinearBackward")
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_takes_a_strided_input_a_layer_without_bias_and_a_frozen_input():
    torch.manual_seed(0)
    layer = Linear(16, 8, bias=False)
    tokens = torch.randn(4, 3, 16)
    cls = tokens[:, 0]  # the heads read one token: a strided view
    with using_cpu_linear("onednn"):
        torch.testing.assert_close(layer(cls), F.linear(cls, layer.weight))
        layer(cls).sum().backward()  # the input needs no gradient
    assert layer.weight.grad.shape == (8, 16)


@needs_onednn
def test_an_empty_batch_goes_through_with_either_library():
    layer = Linear(8, 4)
    for choice in ("blas", "onednn"):
        with using_cpu_linear(choice):
            x = torch.randn(0, 8, requires_grad=True)
            layer(x).sum().backward()
            assert x.grad.shape == (0, 8) and layer(torch.randn(3, 0, 8)).shape == (3, 0, 4)


def test_the_layer_is_nn_linear_with_its_state_dict_keys():
    layer = Linear(4, 3)
    assert isinstance(layer, nn.Linear)
    assert set(layer.state_dict()) == set(nn.Linear(4, 3).state_dict())
    model = create_model("deit_tiny_distilled_patch4_32", embed_dim=32, depth=1, num_heads=2)
    assert {type(m) for m in model.modules() if isinstance(m, nn.Linear)} == {Linear}


@needs_onednn
def test_exported_and_autocast_calls_stay_with_aten_linear():
    layer = Linear(8, 4)
    x = torch.randn(2, 8)
    with using_cpu_linear("onednn"):
        program = torch.export.export(layer, (x,))
        targets = {str(node.target) for node in program.graph.nodes}
        assert not any("mkldnn" in t for t in targets), targets
        with torch.autocast("cpu", torch.bfloat16):
            assert layer(x).dtype == torch.bfloat16  # autocast's own linear
        assert layer(x).grad_fn.name().endswith("_OneDNNLinearBackward")  # eager again


def test_auto_chooses_onednn_only_on_an_amd_zen5_or_later_with_avx512(monkeypatch):
    """As measured: faster on family 26 (Zen 5), slower on 25 (Zen 4), AVX2 and Intel."""
    monkeypatch.setattr(linear_module, "onednn_available", lambda: True)
    for family, isa, want in [(26, "AVX512", "onednn"), (27, "AVX512", "onednn"),
                              (25, "AVX512", "blas"), (26, "AVX2", "blas"),
                              (None, "AVX512", "blas")]:  # fmt: skip
        monkeypatch.setattr(linear_module, "amd_family", lambda f=family: f)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda i=isa: i)
        with using_cpu_linear("auto"):
            assert cpu_linear() == want, (family, isa)
    monkeypatch.setattr(linear_module, "onednn_available", lambda: False)
    with using_cpu_linear("auto"):
        assert cpu_linear() == "blas"


def test_a_choice_holds_for_its_block_and_bad_choices_are_refused():
    before = cpu_linear()
    with using_cpu_linear("blas"):
        assert cpu_linear() == "blas" and hardware()["cpu_linear"] == "blas"  # in summaries
    assert cpu_linear() == before
    with pytest.raises(ValueError, match="cpu_linear must be one of"):
        set_cpu_linear("mkl")
    with pytest.raises(ConfigError, match="cpu_linear must be one of auto, blas, onednn"):
        validate(TrainConfig(cpu_linear="mkl"))


@needs_onednn
def test_the_flop_count_is_the_same_with_either_library():
    model = create_model("deit_tiny_distilled_patch4_32", embed_dim=32, depth=1, num_heads=2)
    x = torch.randn(2, 3, 32, 32)

    def step():
        cls, dist = model(x)
        (cls.sum() + dist.sum()).backward()

    counts = {}
    for choice in ("blas", "onednn"):
        with using_cpu_linear(choice):
            counts[choice] = count_flops(step)
    assert counts["onednn"] == counts["blas"] > 0
