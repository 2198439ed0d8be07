"""CIFAR data: reading and checking the files, batching, augmentation."""

from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from deit.data.cifar import (
    CIFAR,
    DataError,
    holdout_validation,
    load_cifar,
    resolve_data_dir,
    truncate,
)
from deit.data.loader import BatchLoader
from deit.data.pipeline import TrainAugment

__all__ = [
    "CIFAR",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "BatchLoader",
    "DataError",
    "holdout_validation",
    "load_cifar",
    "normalize",
    "resolve_data_dir",
    "truncate",
    "TrainAugment",
]
