"""deit: data-efficient image transformers with distillation through attention.

Every ``deit`` subcommand is one call of this API, so a notebook can do what
the command line does:

- :func:`train` (``deit train``): train a DeiT student, with or without a
  teacher; returns the run's summary.
- :func:`train_teacher` (``deit teacher``): train a CNN teacher.
- :func:`finetune` (``deit finetune``): start a student from trained weights
  (this project's or an official DeiT checkpoint) at another resolution.
- :func:`reproduce` (``deit reproduce``): the distillation matrix A–E, its
  tables and plots.
- :func:`data_curve` (``deit reproduce --train-sizes``): the runs on subsets of
  several sizes at equal compute: where the teacher pays.
- :func:`evaluate` (``deit eval``): test accuracy of any checkpoint.
- :func:`load` and :func:`predict` (``deit predict``): a trained student (or an
  official DeiT by name) ready to classify images, and the top-k classes of
  image files and folders.
- :func:`export_model` (``deit export``): a student as ONNX or for timm, its
  outputs checked against PyTorch's.
- :func:`create_model`: a student by name, e.g. ``deit_tiny_distilled_patch4_32``.
- :func:`load_cifar` and :func:`deit.data.describe` (``deit data``): the data.
- :class:`TrainConfig`, :func:`from_preset`, :class:`TeacherConfig`: the configs.

Every run writes a run directory (``config.json``, ``metrics.jsonl``,
``checkpoint.pt``, ``summary.json``) by the rules of :mod:`deit.rundir`.
"""

from deit import data
from deit.config import PRESETS, TrainConfig, from_preset
from deit.curve import data_curve
from deit.data import load_cifar
from deit.evaluation import evaluate
from deit.export import export_model
from deit.inference import load, predict
from deit.matrix import reproduce
from deit.models import create_model
from deit.teacher_recipe import TeacherConfig
from deit.teacher_training import train_teacher
from deit.trainer import train
from deit.transfer import finetune

__version__ = "0.1.0"
__all__ = [
    "PRESETS",
    "TeacherConfig",
    "TrainConfig",
    "__version__",
    "create_model",
    "data",
    "data_curve",
    "evaluate",
    "export_model",
    "finetune",
    "from_preset",
    "load",
    "load_cifar",
    "predict",
    "reproduce",
    "train",
    "train_teacher",
]
