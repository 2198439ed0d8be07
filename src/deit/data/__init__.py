"""CIFAR data: reading, checking and downloading the files, describing them, batching, augmentation.

`load_cifar` reads a whole data set (`cifar`; where it lives: `layout`; fetched by
`download` when missing),
`describe` reports on one (`report`; what ``deit data`` prints), `BatchLoader` and
`TrainAugment` batch and augment it on the device.
"""

from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from deit.data.cifar import CIFAR, holdout_validation, load_cifar, truncate
from deit.data.layout import DataError, dataset_classes, resolve_data_dir
from deit.data.loader import BatchLoader
from deit.data.pipeline import TrainAugment
from deit.data.report import describe

__all__ = [
    "CIFAR",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "BatchLoader",
    "DataError",
    "dataset_classes",
    "describe",
    "holdout_validation",
    "load_cifar",
    "normalize",
    "resolve_data_dir",
    "truncate",
    "TrainAugment",
]
