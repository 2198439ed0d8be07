"""CIFAR data: reading, checking and downloading the files, describing them, batching, augmentation.

`load_cifar` reads a whole data set (`cifar`; where it lives: `layout`; fetched by
`download` when missing),
`describe` reports on one (`report`; what ``deit data`` prints), `BatchLoader` and
`TrainAugment` batch and augment it on the device.
Image folders (ImageNet layout, `folder`): `scan_folder` lists one, `check_folder` decodes it.
"""

from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from deit.data.cifar import CIFAR, holdout_validation, load_cifar, truncate
from deit.data.folder import IMAGE_EXTENSIONS, ImageFolder, check_folder, open_rgb, scan_folder
from deit.data.layout import DataError, dataset_classes, resolve_data_dir
from deit.data.loader import BatchLoader
from deit.data.pipeline import TrainAugment
from deit.data.report import describe

__all__ = [
    "CIFAR",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "BatchLoader",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "DataError",
    "check_folder",
    "dataset_classes",
    "describe",
    "holdout_validation",
    "load_cifar",
    "normalize",
    "open_rgb",
    "resolve_data_dir",
    "scan_folder",
    "truncate",
    "TrainAugment",
]
