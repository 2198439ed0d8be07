"""Distillation through attention: the paper's losses and teacher–student agreement.

Notation of Touvron et al. (2020): ``Z_s`` the class-head logits, ``Z_d`` the
distillation-head logits, ``Z_t`` the teacher's logits, ψ the softmax, τ the
temperature. A student without a distillation token uses its class head for
both terms (the paper's "usual distillation" on a plain ViT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("none", "soft", "hard")
DEFAULT_ALPHA = {"none": 0.0, "soft": 0.1, "hard": 0.5}
DEFAULT_TAU = 3.0


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Batch-mean cross-entropy against class indices or soft (e.g. mixup) targets."""
    if targets.dtype == torch.long:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1]
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def distillation_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    kind: str,
    alpha: float | None = None,
    tau: float = DEFAULT_TAU,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The training loss of a DeiT student, as in the paper.

    - ``none``: CE(Z_s, y); a distilled student trains both heads on the labels
      (the mean of the two CE terms).
    - ``soft``: (1−α)·CE(Z_s, y) + α·τ²·KL(ψ(Z_t/τ) ‖ ψ(Z_d/τ)); the KL is the
      per-sample sum over classes averaged over the batch ("batchmean", not the
      reference code's extra division by the class count, which would make α
      C times smaller). Paper defaults α = 0.1, τ = 3.
    - ``hard``: (1−α)·CE(Z_s, y) + α·CE(Z_d, argmax Z_t); the teacher's label
      is never smoothed. Paper default α = ½.

    ``outputs`` is the class logits of a plain student, or the pair (class,
    distillation) of a distilled one; ``labels`` are class indices or soft
    targets (rows summing to one); ``label_smoothing`` applies to ``labels``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown distillation kind {kind!r}; choose one of {KINDS}")
    z_s, z_d = outputs if isinstance(outputs, tuple) else (outputs, outputs)
    if kind == "none":
        heads = outputs if isinstance(outputs, tuple) else (outputs,)
        return sum(cross_entropy(z, labels, label_smoothing) for z in heads) / len(heads)
    if teacher_logits is None:
        raise ValueError(f"{kind} distillation needs the teacher's logits")
    alpha = DEFAULT_ALPHA[kind] if alpha is None else alpha
    base = cross_entropy(z_s, labels, label_smoothing)
    if kind == "soft":
        kl = F.kl_div(
            F.log_softmax(z_d / tau, dim=1),
            F.log_softmax(teacher_logits / tau, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - alpha) * base + alpha * tau**2 * kl
    return (1 - alpha) * base + alpha * F.cross_entropy(z_d, teacher_logits.argmax(1))


def teacher_agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Percent of images on which the student's prediction equals the teacher's."""
    same = student_logits.argmax(1) == teacher_logits.argmax(1)
    return 100.0 * same.float().mean().item()
