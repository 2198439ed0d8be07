"""Image-folder data sets (the ImageNet / torchvision ImageFolder layout), decoded with Pillow.

``ROOT/train/<class>/<image>`` and ``ROOT/val/<class>/<image>``; the classes are
the sorted folder names of ``train/``. `scan_folder` lists the images without
decoding any (fast on ImageNet's 1.3 M files), `check_folder` decodes every one
in worker processes and reports those that fail, `open_rgb` decodes one.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from deit.data.layout import DataError
from deit.hardware import usable_cores

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "check_folder", "open_rgb", "scan_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
"""File endings read as images, in any case (``.JPG`` too); everything else is ignored."""


def open_rgb(
    path: str | Path, min_size: tuple[int, int] | None = None, *, data: bytes | None = None
) -> Image.Image:
    """Decode the image at ``path`` as 8-bit RGB (grayscale, palette, CMYK, alpha converted).

    ``min_size`` (width, height): the smallest size the caller will still
    need; a JPEG is then decoded at a reduced scale (Pillow's draft mode:
    1/2, 1/4 or 1/8, never below ``min_size``), which is several times
    cheaper than a full decode followed by a downscale. Transparent pixels
    are composited onto white, as a viewer shows them. Raises
    :class:`~deit.data.layout.DataError` naming the file and the reason when
    it cannot be decoded (missing, truncated, not an image). ``data``: the
    file's bytes, already read (``path`` then only names it in messages).
    """
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            if min_size is not None and image.format == "JPEG":
                image.draft("RGB", min_size)
            image.load()
            return _to_rgb(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode {path}: {_reason(err)}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB; alpha (also a palette's transparency) composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "PA") or (image.mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.getchannel("A"))
        return white
    return image.convert("RGB")


def _reason(err: Exception) -> str:
    """A short reason for a decoding failure (Pillow's messages, without the path)."""
    if isinstance(err, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(err, FileNotFoundError):
        return "no such file"
    text = str(err).split(":")[0] if str(err) else type(err).__name__
    return text.replace("image file is truncated", "truncated file")


# ----------------------------------------------------------------------------- scanning

_EXPECTED = "expected ROOT/train/<class>/... and ROOT/val/<class>/..."
_SPLITS = ("train", "val")


@dataclass(frozen=True, repr=False)
class ImageFolder:
    """A scanned image folder: its classes and the (path, label) pairs of each split.

    ``classes`` are the sorted class-folder names of ``train/``; a label is an index into
    them (val images are labelled by train's index). Pairs are sorted by class, then by
    path inside the class folder. Paths are absolute strings.
    """

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    val: tuple[tuple[str, int], ...]

    @property
    def num_classes(self) -> int:
        """Number of classes (class folders of ``train/``)."""
        return len(self.classes)

    def per_class(self, split: str) -> list[int]:
        """Images per class of ``split`` ("train" or "val"), indexed by label."""
        counts = [0] * self.num_classes
        for _, label in getattr(self, split):
            counts[label] += 1
        return counts

    def __repr__(self) -> str:
        return (
            f"ImageFolder(root={str(self.root)!r}, classes={self.num_classes}, "
            f"train={len(self.train)}, val={len(self.val)})"
        )


def scan_folder(root: str | os.PathLike[str]) -> ImageFolder:
    """List the images of ``ROOT/train/<class>/...`` and ``ROOT/val/<class>/...``; decode none.

    Images are files whose ending (any case) is in `IMAGE_EXTENSIONS`, also in nested
    subfolders of a class folder; hidden entries (name starting with ".") and other files
    are ignored. Symbolic links to folders are followed once (loops are skipped). Raises
    `DataError` with one line naming the path when the root is missing or empty, a split
    is missing or has no class folders, a class folder has no images, or ``val/`` has a
    class that ``train/`` lacks. A ``train/`` class without ``val/`` images is allowed.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not path.exists():
        raise DataError(f"{path} does not exist ({_EXPECTED})")
    if not path.is_dir():
        raise DataError(f"{path} is not a directory ({_EXPECTED})")
    if not _visible(path):
        raise DataError(f"{path} is empty ({_EXPECTED})")
    for split in _SPLITS:  # both, before the (long) listing of either
        if not (path / split).is_dir():
            raise DataError(f"{path} has no {split}/ split ({_EXPECTED})")
    found = {split: _scan_split(path / split) for split in _SPLITS}
    classes = tuple(sorted(found["train"]))
    extra = sorted(set(found["val"]) - set(classes))
    if extra:
        raise DataError(
            f"{path / 'val'} has {len(extra)} class(es) missing from {path / 'train'}: "
            f"{_names(extra)}"
        )
    index = {name: i for i, name in enumerate(classes)}
    train, val = (
        tuple((file, index[name]) for name in sorted(found[split]) for file in found[split][name])
        for split in _SPLITS
    )
    return ImageFolder(path, classes, train, val)


def _scan_split(split: Path) -> dict[str, list[str]]:
    """Class name → sorted image paths of one split folder; every class must have images."""
    folders = sorted(
        (entry.name, entry.path)
        for entry in _visible(split)
        if entry.is_dir()  # follows a symlinked class folder
    )
    if not folders:
        raise DataError(f"{split} has no class folders (expected {split}/<class>/<image>)")
    images = {}
    for name, folder in folders:
        files = sorted(_images(folder, set()))
        if not files:
            endings = ", ".join(IMAGE_EXTENSIONS)
            raise DataError(f"class folder {folder} has no images ({endings}, in any case)")
        images[name] = files
    return images


def _images(folder: str, seen: set[tuple[int, int]]) -> list[str]:
    """Image paths under ``folder``, recursively, with os.scandir (no stat per file)."""
    info = os.stat(folder)  # one stat per folder: skip a folder already walked (link loops)
    if (info.st_dev, info.st_ino) in seen:
        return []
    seen.add((info.st_dev, info.st_ino))
    found = []
    for entry in _visible(folder):
        if entry.is_dir():  # the type comes with the entry; only a symlink costs a stat
            found.extend(_images(entry.path, seen))
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
            found.append(entry.path)
    return found


def _visible(folder: str | Path) -> list[os.DirEntry[str]]:
    """Entries of ``folder`` whose names do not start with "."."""
    try:
        with os.scandir(folder) as entries:
            return [entry for entry in entries if not entry.name.startswith(".")]
    except OSError as err:
        raise DataError(f"cannot list {folder}: {err.strerror or err}") from None


def _names(names: list[str], limit: int = 10) -> str:
    """Up to ``limit`` names, comma-separated, with a count of the rest."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


# ----------------------------------------------------------------------------- checking


def check_folder(
    folder: ImageFolder, workers: int = 0, progress: bool = True
) -> list[tuple[str, str]]:
    """Decode every image of both splits with `open_rgb`; return (path, reason) of each failure.

    ``workers`` processes decode in chunks (0: one per usable core; 1: in this process); the
    failures come back in scan order (train, then val). ``progress`` shows a tqdm bar on
    stderr.
    """
    paths = [path for path, _ in folder.train + folder.val]
    workers = min(workers or usable_cores(), max(len(paths), 1))
    bar = tqdm(
        total=len(paths), desc="checking images", unit="img", file=sys.stderr,
        disable=not progress, mininterval=0.5, dynamic_ncols=True,
    )  # fmt: skip
    with bar:
        if workers <= 1:
            return _collect(paths, map(_failure, paths), bar, 1)
        chunk = max(1, min(256, len(paths) // (workers * 8)))
        # fork: the workers start at once, without importing deit (and torch) again
        fork = "fork" in multiprocessing.get_all_start_methods()
        with multiprocessing.get_context("fork" if fork else None).Pool(workers) as pool:
            return _collect(paths, pool.imap(_failure, paths, chunk), bar, chunk)


def _collect(
    paths: list[str], results: Iterable[str | None], bar: tqdm, step: int
) -> list[tuple[str, str]]:
    """(path, reason) of every failed result, advancing ``bar`` as results arrive."""
    bad = []
    for i, (path, reason) in enumerate(zip(paths, results, strict=True), 1):
        if reason is not None:
            bad.append((path, reason))
        if i % step == 0 or i == len(paths):
            bar.update(i - bar.n)
    return bad


def _failure(path: str) -> str | None:
    """Why ``path`` cannot be decoded, or None when it can (runs in a worker process)."""
    return decode_failure(open_rgb, path)


def decode_failure(decode: Callable[..., object], name: str, *args) -> str | None:
    """Why ``decode(*args, name)`` fails for the image ``name``, or None when it does not.

    For the checks of ``deit data --check`` (folders and shards): the reason
    without the "cannot decode NAME: " that the caller prints beside the name;
    any decoder failure is a reason, so that a broken file never stops a check.
    """
    try:
        decode(*args, name)
    except DataError as err:
        return str(err).removeprefix(f"cannot decode {name}: ")
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None
