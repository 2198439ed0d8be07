"""Using a trained teacher: feed it a student's batches, predict, evaluate.

A teacher is only as good as its inputs. The student report's hard-distillation
rows collapsed because its teacher saw the *student's* normalisation: its argmax
labels were then mostly wrong. So every teacher architecture
(:mod:`deit.models.cnn`) carries its own input normalisation (``mean``,
``std``) and resolution (``img_size``), and :class:`Teacher` converts whatever
batch the student trains on into exactly that before the forward pass;
:func:`predict` and :func:`evaluate_teacher` feed uint8 images the same way.

Finding, reading, checking and exporting teacher weights (``load_teacher``,
``check_teacher_fits``, ``export_teacher``) is :mod:`deit.models.teacher_files`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from deit.data.augment import normalize, resize
from deit.models.cnn import fold_batchnorm

__all__ = [
    "Teacher",
    "evaluate_teacher",
    "predict",
    "tta_logits",
]


# ----------------------------------------------------------------------------- wrapper


class Teacher(nn.Module):
    """A frozen teacher that takes the student's batches and sees its own inputs.

    ``input_mean``/``input_std`` are the normalisation of the batches the
    student trains on (any resolution). Each forward un-normalises the batch
    to [0, 1] pixels, resizes it to the teacher's ``img_size`` if needed
    (:func:`~deit.data.augment.resize` with ``pool=True``: a downscale by a
    whole factor averages blocks, exactly undoing a nearest-neighbour
    upscale), and normalises it with the teacher's own statistics, so the
    teacher's accuracy on the student's tensors is its accuracy on its
    native inputs.

    The model inside is an inference copy (BN folded, channels-last) with no
    gradients; ``train()`` cannot take it out of eval mode, so its batch-norm
    statistics never drift; the forward runs under ``torch.inference_mode``
    and returns ordinary tensors that losses can use.

    ``bf16`` runs the network under bfloat16 autocast (logits returned in
    float32): on CPUs with bf16 matrix units (AVX512-BF16, AMX) and on GPUs
    the teacher's forward is then much cheaper, and its predictions barely
    move (benchmarks/RESULTS.md measures both on the test set).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_mean: tuple[float, ...],
        input_std: tuple[float, ...],
        fold: bool = True,
        bf16: bool = False,
    ):
        super().__init__()
        self.bf16 = bf16
        self.model = fold_batchnorm(model) if fold else copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.mean, self.std, self.img_size = model.mean, model.std, model.img_size
        self.input_mean, self.input_std = tuple(input_mean), tuple(input_std)
        self.register_buffer("_in_mean", torch.tensor(input_mean).view(1, -1, 1, 1), False)
        self.register_buffer("_in_std", torch.tensor(input_std).view(1, -1, 1, 1), False)
        self.register_buffer("_mean", torch.tensor(model.mean).view(1, -1, 1, 1), False)
        self.register_buffer("_std", torch.tensor(model.std).view(1, -1, 1, 1), False)
        self.train(False)

    def train(self, mode: bool = True) -> Teacher:
        """Stay in eval mode whatever is asked: a teacher's BN statistics must not move."""
        return super().train(False)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Turn a student-normalised batch into the teacher's normalised input."""
        pixels = x * self._in_std + self._in_mean
        pixels = resize(pixels, self.img_size, pool=True)
        return ((pixels - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits for a student-normalised batch (no gradient flows)."""
        autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with torch.inference_mode(), autocast:
            logits = self.model(self.adapt(x))
        return logits.float().clone()  # an ordinary tensor, usable in autograd graphs


# ----------------------------------------------------------------------------- inference


def tta_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Test-time-augmented logits: mirror, and ±1 px diagonal translations (6 views).

    Half the weight on the image and its mirror, a quarter on each of the
    two 1-pixel shifts (up-left, down-right, reflect-filled) with mirrors.
    """

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(v) + model(v.flip(3)))

    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    up_left, down_right = padded[..., :h, :w], padded[..., 2:, 2:]
    return 0.5 * mirrored(x) + 0.25 * (mirrored(up_left) + mirrored(down_right))


def _inference_model(teacher: nn.Module) -> nn.Module:
    """The folded, frozen network behind a :class:`Teacher` or a bare architecture."""
    return teacher.model if isinstance(teacher, Teacher) else fold_batchnorm(teacher)


@torch.inference_mode()
def predict(
    teacher: nn.Module, images: torch.Tensor, *, tta: bool = False, batch_size: int = 128
) -> torch.Tensor:
    """Logits of a teacher for uint8 images ``N×3×H×W``, fed its own normalisation and size.

    ``teacher`` is a bare architecture (folded for inference here) or a
    :class:`Teacher` (whose folded network is used directly). Images of
    another size are resized as :class:`Teacher` resizes them. Batches of
    128: on a CPU larger ones spill the activations out of cache (the shipped
    teacher 1.37× faster than at 1,000, with the same logits bit for bit:
    benchmarks/eval_batch.py).
    """
    model = _inference_model(teacher)
    outputs = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], teacher.mean, teacher.std)
        x = resize(x, teacher.img_size, pool=True)
        x = x.contiguous(memory_format=torch.channels_last)
        outputs.append(tta_logits(model, x) if tta else model(x))
    return torch.cat(outputs)


def evaluate_teacher(
    teacher: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    tta: bool = False,
    batch_size: int = 128,
) -> float:
    """Top-1 accuracy in percent of ``teacher`` on uint8 ``images``, optionally with TTA.

    The teacher sees its own normalisation and resolution, as it would
    through :class:`Teacher`.
    """
    logits = predict(teacher, images, tta=tta, batch_size=batch_size)
    return 100.0 * (logits.argmax(1) == labels).sum().item() / len(labels)
