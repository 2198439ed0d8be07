"""Tests for the optimiser groups, the schedule, a training epoch and the evaluation of heads."""

import math

import pytest
import torch

from deit.engine import cosine_lr, evaluate, param_groups, train_one_epoch
from deit.models import create_model


def tiny(name="deit_tiny_distilled_patch8_32"):
    return create_model(name, embed_dim=16, depth=1, num_heads=2)


def test_no_weight_decay_on_norms_biases_tokens_and_pos_embed():
    model = tiny()
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"pos_embed", "cls_token", "dist_token", "norm.weight", "head.bias"} <= undecayed
    assert {"blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "head_dist.weight"} <= decayed
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decayed) + len(undecayed) == len(list(model.parameters()))


def test_cosine_lr_warms_up_then_decays_to_floor():
    lrs = [cosine_lr(s, 100, 10, 1.0, 0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.01, abs=1e-3)
    assert cosine_lr(55, 100, 10, 1.0, 0.0) == pytest.approx(0.5)
    assert not math.isnan(cosine_lr(0, 1, 0, 1.0, 0.0))


def test_an_epoch_counts_the_time_spent_waiting_for_batches():
    """A loader that takes 50 ms a batch shows as data_seconds, the steps' own time does not."""
    import time

    model = create_model("deit_tiny_patch8_32", embed_dim=16, depth=1, num_heads=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = (torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 3]))

    def slow_loader(batches: int, delay: float):
        for _ in range(batches):
            time.sleep(delay)
            yield batch

    def epoch(batches):
        return train_one_epoch(
            model, batches, lambda x, y: (x.float() / 255, y), optimizer, lambda step: 0.01, 0,
            loss_fn=lambda out, y, x: torch.nn.functional.cross_entropy(out, y), show=False,
        )  # fmt: skip

    slow = epoch(slow_loader(4, 0.05))
    assert slow["steps"] == 4 and 0.2 <= slow["data_seconds"] < slow["seconds"]
    fast = epoch(slow_loader(4, 0.0))
    assert fast["data_seconds"] < 0.05 < slow["data_seconds"] - fast["data_seconds"]


def test_evaluate_reports_every_head_of_a_distilled_model():
    torch.manual_seed(0)
    model = tiny().train()
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (40,))
    top1 = evaluate(model, images, labels, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=16)
    assert set(top1) == {"cls", "dist", "avg"}
    assert model.training, "evaluate must restore the training mode"
    model.eval()
    with torch.no_grad():
        x = (images.float() / 255 - 0.5) / 0.25
        cls, dist = model(x, head="both")
    assert top1["cls"] == pytest.approx(100 * (cls.argmax(1) == labels).float().mean().item())
    avg = ((cls + dist) / 2).argmax(1)
    assert top1["avg"] == pytest.approx(100 * (avg == labels).float().mean().item())


def test_evaluate_plain_model_has_only_the_class_head():
    model = tiny("deit_tiny_patch8_32")
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    top1 = evaluate(model, images, torch.zeros(4, dtype=torch.long), mean=(0,) * 3, std=(1,) * 3)
    assert set(top1) == {"cls"}
