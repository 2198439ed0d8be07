"""deit: data-efficient image transformers with distillation through attention.

The public API mirrors the command line: each ``deit`` subcommand is a thin
layer over a function importable from here.
"""

from deit.data import load_cifar
from deit.models import create_model
from deit.trainer import train

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "load_cifar", "train"]
