"""The distillation losses against hand computations of the paper's formulas."""

import math

import pytest
import torch

from deit.distill import cross_entropy, distillation_loss, teacher_agreement

Z_S = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
Z_D = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
Z_T = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.5]])
Y = torch.tensor([0, 1])


def softmax(row, tau=1.0):
    e = [math.exp(v / tau) for v in row]
    return [v / sum(e) for v in e]


def ce(rows, targets):
    """Mean of -log p[target] per row, by hand."""
    return sum(-math.log(softmax(r)[t]) for r, t in zip(rows, targets, strict=True)) / len(rows)


def kl(teacher_rows, student_rows, tau):
    """Mean over rows of sum_c p_t log(p_t / p_s), temperature tau, by hand."""
    total = 0.0
    for t, s in zip(teacher_rows, student_rows, strict=True):
        p_t, p_s = softmax(t, tau), softmax(s, tau)
        total += sum(a * math.log(a / b) for a, b in zip(p_t, p_s, strict=True))
    return total / len(teacher_rows)


S, D, T = Z_S.tolist(), Z_D.tolist(), Z_T.tolist()
TEACHER_LABELS = [1, 0]


@pytest.mark.parametrize("distilled", [True, False])
def test_soft_distillation(distilled):
    outputs = (Z_S, Z_D) if distilled else Z_S
    z_d = D if distilled else S
    expected = 0.9 * ce(S, [0, 1]) + 0.1 * 9 * kl(T, z_d, 3.0)
    assert distillation_loss(outputs, Y, Z_T, "soft").item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("distilled", [True, False])
def test_hard_distillation(distilled):
    outputs = (Z_S, Z_D) if distilled else Z_S
    z_d = D if distilled else S
    expected = 0.5 * ce(S, [0, 1]) + 0.5 * ce(z_d, TEACHER_LABELS)
    assert distillation_loss(outputs, Y, Z_T, "hard").item() == pytest.approx(expected, rel=1e-5)


def test_hard_teacher_label_is_not_smoothed_but_the_true_label_is():
    smoothed = 0.5 * cross_entropy(Z_S, Y, 0.1) + 0.5 * ce(D, TEACHER_LABELS)
    loss = distillation_loss((Z_S, Z_D), Y, Z_T, "hard", label_smoothing=0.1)
    assert loss.item() == pytest.approx(smoothed.item(), rel=1e-5)


def test_soft_labels_equal_one_hot_indices():
    one_hot = torch.nn.functional.one_hot(Y, 3).float()
    for kind in ("none", "soft", "hard"):
        a = distillation_loss((Z_S, Z_D), one_hot, Z_T, kind, label_smoothing=0.1)
        b = distillation_loss((Z_S, Z_D), Y, Z_T, kind, label_smoothing=0.1)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_mixed_soft_labels_by_hand():
    mixed = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    expected = 0.0
    for row, target in zip(S, mixed.tolist(), strict=True):
        expected -= sum(t * math.log(p) for t, p in zip(target, softmax(row), strict=True))
    assert cross_entropy(Z_S, mixed).item() == pytest.approx(expected / 2, rel=1e-5)


def test_none_trains_both_heads_on_labels_and_ignores_the_teacher():
    expected = (ce(S, [0, 1]) + ce(D, [0, 1])) / 2
    assert distillation_loss((Z_S, Z_D), Y, None, "none").item() == pytest.approx(expected)
    assert distillation_loss(Z_S, Y, None, "none").item() == pytest.approx(ce(S, [0, 1]))


def test_alpha_and_tau_override_the_defaults():
    expected = 0.5 * ce(S, [0, 1]) + 0.5 * 4 * kl(T, D, 2.0)
    loss = distillation_loss((Z_S, Z_D), Y, Z_T, "soft", alpha=0.5, tau=2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="unknown distillation kind"):
        distillation_loss(Z_S, Y, Z_T, "medium")
    with pytest.raises(ValueError, match="teacher"):
        distillation_loss(Z_S, Y, None, "hard")


def test_teacher_agreement():
    assert teacher_agreement(Z_S, Z_T) == 0.0
    assert teacher_agreement(Z_T, Z_T) == 100.0
    assert teacher_agreement(Z_D, Z_T) == 50.0
