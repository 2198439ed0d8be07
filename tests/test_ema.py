"""Model EMA: the average follows the hand formula and stays frozen."""

import torch

from deit.ema import ModelEMA


def test_ema_follows_decay_formula_and_copies_buffers():
    model = torch.nn.BatchNorm1d(3)
    ema = ModelEMA(model, decay=0.9)
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
        model.running_mean.fill_(5.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, 0.9 * before + 0.1 * model.weight)
    assert torch.equal(ema.module.running_mean, model.running_mean)
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_ema_state_round_trips():
    model = torch.nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.5)
    other = ModelEMA(torch.nn.Linear(2, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.weight, ema.module.weight)
