"""Use a trained student: ``deit.load`` and ``deit.predict`` (``deit predict``).

What this room holds today:

- :func:`load`: a ``deit train``/``deit finetune`` checkpoint (its file or run
  directory), an official DeiT checkpoint file, or an official DeiT name
  (fetched by :mod:`deit.hub`) → the model in eval mode, its
  :class:`Preprocess` and its class names.
- :class:`Preprocess`: exactly ``deit eval``'s preprocessing for that model —
  the 32-px CIFAR path (the image resized to 32 px, normalised, then resized
  to the model's size as ``deit eval`` does for a fine-tuned student) or an
  image folder's (short side to size / ``eval_crop_pct``, central crop).
- :func:`predict`: image files and folders → the top-k classes of each,
  decoded in worker processes by the folder pipeline
  (:class:`~deit.data.stream.StreamLoader`), in batches, with a progress bar.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from deit import hub
from deit.checkpoint import CheckpointError, checkpoint_file, load_checkpoint
from deit.config import ConfigError, TrainConfig
from deit.data import IMAGE_EXTENSIONS, DataError, load_cifar, open_rgb
from deit.data.augment import dataset_stats, normalize, resize
from deit.data.stream import StreamLoader
from deit.data.transforms import eval_crop, plain_resize, to_tensor
from deit.evaluation import rebuild_student
from deit.hardware import usable_cores
from deit.inputs import normalization
from deit.models.deit import HEADS, VisionTransformer
from deit.models.state_dicts import load_weights
from deit.models.teacher_files import SHIPPED_TEACHERS
from deit.pretrained import pretrained_state

CIFAR_SIZE = 32
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")  # fmt: skip
"""CIFAR-10's class names in label order (those of ``batches.meta.txt``), known without the data."""


class BadImage(Exception):
    """A file given to :func:`predict` that cannot be decoded (one line naming it; exit 1)."""


@dataclass(frozen=True)
class Preprocess:
    """``deit eval``'s preprocessing of one model: image → normalised float tensor 3×S×S.

    ``mode`` ``"eval"``: short side to ``int(size / crop_pct)`` (bicubic), central
    ``size`` crop (an image-folder student, an official DeiT); ``"plain"``:
    resized to ``size`` unless already there (CIFAR at 32 px, or a folder student
    trained with ``train_crop=none``). Then ``(x/255 - mean) / std`` and, if the
    model's ``img_size`` differs from ``size`` (a CIFAR student fine-tuned at 48
    px), the batched resize ``deit eval`` applies. Call it on a path or a PIL
    image; :meth:`batch` finishes uint8 batches the folder pipeline decoded.
    """

    mode: str
    size: int
    crop_pct: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int

    def view(self, image: Image.Image) -> torch.Tensor:
        """The uint8 3×size×size view of a decoded RGB image (no normalisation)."""
        if self.mode == "eval":
            return to_tensor(eval_crop(image, self.size, self.crop_pct))
        return to_tensor(plain_resize(image, self.size))

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 views ``B×3×size×size`` → the model's normalised float input ``B×3×S×S``."""
        return resize(normalize(images, self.mean, self.std), self.img_size)

    def __call__(self, image: str | os.PathLike[str] | Image.Image) -> torch.Tensor:
        """One image (a path, or a PIL image in any mode) → the model's input, 3×S×S."""
        if not isinstance(image, Image.Image):
            image = open_rgb(image)
        elif image.mode != "RGB":
            image = image.convert("RGB")
        return self.batch(self.view(image).unsqueeze(0))[0]

    def loader(self, paths: list[str], batch_size: int, workers: int, skip_bad: bool):
        """A :class:`StreamLoader` of ``paths`` in order; each label is the path's index."""
        samples = [(path, i) for i, path in enumerate(paths)]
        return StreamLoader(samples, batch_size, size=self.size, mode=self.mode, shuffle=False,
                            drop_last=False, workers=workers, skip_bad=skip_bad,
                            crop_pct=self.crop_pct)  # fmt: skip


def _student_preprocess(config: TrainConfig) -> Preprocess:
    """The preprocessing ``deit eval`` applies for a student trained with ``config``."""
    mean, std = normalization(config)
    if config.dataset not in ("folder", "shards"):  # CIFAR: 32-px images, resized if needed
        return Preprocess("plain", CIFAR_SIZE, 1.0, mean, std, config.img_size)
    mode = "eval" if config.train_crop == "random_resized" else "plain"
    return Preprocess(mode, config.img_size, config.eval_crop_pct, mean, std, config.img_size)


def _student_classes(
    config: TrainConfig, num_classes: int, saved: list[str] | None = None
) -> tuple[str, ...]:
    """The class names of the data set the student was trained on (indices when unknown).

    Those its checkpoint saved (every checkpoint of ``deit train`` since they
    were added); for older ones: CIFAR-10's are known; CIFAR-100's are read
    from the data set, and an image folder's are the sorted visible folder
    names of its ``train/``, if the data is still where the run found it.
    """
    names: tuple[str, ...] = ()
    if saved:
        names = tuple(saved)
    elif config.dataset == "cifar10":
        names = CIFAR10_CLASSES
    elif config.dataset == "folder" and config.data_dir:
        train = Path(config.data_dir) / "train"
        if train.is_dir():
            names = tuple(sorted(e.name for e in os.scandir(train)
                                 if e.is_dir() and not e.name.startswith(".")))  # fmt: skip
    else:
        try:
            names = load_cifar(config.dataset, config.data_dir, download=False).classes
        except (DataError, FileNotFoundError):
            names = ()
    return names if len(names) == num_classes else tuple(str(i) for i in range(num_classes))


def _official_student(path: Path, payload: Any):
    """The model (eval mode), :class:`Preprocess` and class names of an official DeiT
    checkpoint already loaded from ``path`` (:func:`load`'s other half).

    The architecture is read from the tensor shapes; the preprocessing is
    DeiT's (short side to size / crop, bicubic, central crop; ImageNet's
    mean and std). Raises a one-line :class:`CheckpointError` for a file that
    is not a DeiT student.
    """
    try:
        state, arch = pretrained_state(payload, path)
    except CheckpointError as err:
        reason = str(err).removeprefix(f"{path} ").removeprefix("is not a DeiT checkpoint ")
        raise CheckpointError(
            f"{path} is not a DeiT student (neither a deit train/finetune checkpoint nor official "
            f"DeiT weights): {reason.strip('()')}"
        ) from None
    model = VisionTransformer(
        img_size=arch["img_size"], patch_size=arch["patch_size"], embed_dim=arch["embed_dim"],
        depth=arch["depth"], num_heads=arch["num_heads"], distilled=arch["distilled"],
        num_classes=arch["num_classes"],
    )  # fmt: skip
    load_weights(model, state, str(path))
    size = arch["img_size"]
    mean, std = dataset_stats("imagenet")
    preprocess = Preprocess("eval", size, hub.CROP_PCT.get(size, 0.875), mean, std, size)
    n = arch["num_classes"]
    classes = hub.imagenet_classes() if n == 1000 else tuple(str(i) for i in range(n))
    return model.eval(), preprocess, classes


def _resolve(checkpoint: str | os.PathLike[str], download: bool) -> Path:
    """The checkpoint file that ``checkpoint`` (file, run directory or official name) means."""
    path = checkpoint_file(checkpoint)
    if path.is_file():
        return path
    if str(checkpoint) in SHIPPED_TEACHERS:
        raise CheckpointError(f"{checkpoint} is a teacher, not a student")
    if hub.is_official(str(checkpoint)):
        return hub.fetch(str(checkpoint), download=download)
    raise CheckpointError(
        f"no checkpoint at {checkpoint}: give a checkpoint file, a run directory or an "
        f"official DeiT name ({', '.join(hub.OFFICIAL)})"
    )


def load(
    checkpoint: str | os.PathLike[str], *, head: str | None = None, download: bool = True
) -> tuple[VisionTransformer, Preprocess, tuple[str, ...]]:
    """``model, preprocess, classes = deit.load(PATH)``: a student ready to classify images.

    ``PATH`` is a ``deit train``/``deit finetune`` run directory or checkpoint,
    an official DeiT checkpoint file, or an official name such as
    ``deit_tiny_distilled_patch16_224`` (downloaded once into the cache, see
    :mod:`deit.hub`; ``download=False`` refuses). The model is in eval mode
    and returns the logits of ``head`` (``cls``, ``dist`` or ``avg``; default
    ``avg`` for a distilled student, ``cls`` otherwise); ``preprocess`` turns
    an image into its input exactly as ``deit eval`` does; ``classes`` names
    the logits in order. Raises :class:`CheckpointError` (one line) for
    anything that is not a student and :class:`ConfigError` for a head the
    model does not have.
    """
    path = _resolve(checkpoint, download)
    payload = load_checkpoint(path)
    if isinstance(payload, dict) and "student" in (payload.get("config") or {}):
        model, config = rebuild_student(payload, str(path))
        preprocess = _student_preprocess(config)
        classes = _student_classes(config, model.num_classes, payload.get("classes"))
    else:
        model, preprocess, classes = _official_student(path, payload)
    if head is not None:
        if head not in HEADS:
            raise ConfigError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if head != "cls" and not model.distilled:
            raise ConfigError(
                f"head {head!r} needs a distillation token; {checkpoint} has only the class "
                f"head (use --head cls)"
            )
        model.eval_head = head
    return model.eval(), preprocess, classes


# ----------------------------------------------------------------------------- predict


def find_images(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The image files of ``paths``: files as given, folders searched recursively (sorted).

    In folders, files with an image ending (``IMAGE_EXTENSIONS``, any case)
    are taken and hidden files and folders skipped; a file named directly is
    always taken (if it is no image, decoding it says so). Raises a one-line
    :class:`DataError` for a path that does not exist or a folder without
    images, before any work.
    """
    found: list[str] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_file():
            found.append(str(path))
        elif path.is_dir():
            images = sorted(_images_under(path))
            if not images:
                raise DataError(f"folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            found.extend(images)
        else:
            raise DataError(f"no such file or folder: {path}")
    if not found:
        raise DataError("no images given")
    return found


def _images_under(folder: Path) -> Iterator[str]:
    """Image files under ``folder``, recursively; hidden files and folders skipped."""
    for parent, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                yield os.path.join(parent, name)


def predictions(
    checkpoint: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]],
    *,
    topk: int = 5,
    head: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    download: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield one record per image, in the order of :func:`find_images`, as it is classified.

    A record is ``{"path", "classes", "indices", "probs"}`` (the top ``topk``
    classes, best first, with their softmax probabilities), or, with
    ``skip_bad``, ``{"path", "error"}`` for a file that does not decode.
    Without ``skip_bad`` such a file raises :class:`BadImage` naming it. The
    checks (checkpoint, head, paths, sizes) all run before the first image
    is decoded. ``workers`` decoding processes (default: one per core, none
    for fewer than 256 images).
    """
    if topk < 1 or batch_size < 1 or (workers is not None and workers < 0):
        raise ConfigError(f"topk and batch_size must be at least 1 and workers at least 0, got "
                          f"topk={topk}, batch_size={batch_size}, workers={workers}")  # fmt: skip
    model, preprocess, classes = load(checkpoint, head=head, download=download)
    files = find_images(paths)
    if workers is None:
        workers = usable_cores() if len(files) >= 256 else 0
    return _classify(model, preprocess, classes, files, min(topk, len(classes)),
                     batch_size, workers, skip_bad, progress)  # fmt: skip


def _classify(model, preprocess, classes, files, topk, batch_size, workers, skip_bad, progress):
    """The generator behind :func:`predictions` (separate, so that its checks run at once)."""
    loader = preprocess.loader(files, batch_size, workers, skip_bad)
    bar = tqdm(total=len(files), desc="predicting", unit="img", file=sys.stderr,
               disable=not progress or None, mininterval=0.5, dynamic_ncols=True)  # fmt: skip
    done = 0  # records yielded: files[:done] are accounted for
    batches = iter(loader)
    try:
        with torch.inference_mode():
            for images, index in batches:
                probs, top = model(preprocess.batch(images)).softmax(1).topk(topk, dim=1)
                for i, p, t in zip(index.tolist(), probs.tolist(), top.tolist(), strict=True):
                    yield from (_skipped(f) for f in files[done:i])  # dropped by the loader
                    yield {"path": files[i], "classes": [classes[c] for c in t],
                           "indices": t, "probs": p}  # fmt: skip
                    done = i + 1
                bar.update(len(index))
        yield from (_skipped(f) for f in files[done:])
    except DataError as err:
        raise BadImage(str(err)) from None
    finally:  # stop the workers now, also when the consumer stops early or fails
        batches.close()
        loader.close()
        bar.close()


def _skipped(path: str) -> dict[str, str]:
    """The record of a file the loader skipped, with the reason it does not decode."""
    try:
        open_rgb(path)
        reason = "skipped"
    except DataError as err:
        reason = str(err)
    return {"path": path, "error": reason}


def predict(
    checkpoint: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]],
    *,
    topk: int = 5,
    head: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    download: bool = True,
    sink: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Classify image files and folders with a student: ``deit predict`` as a function.

    Arguments as :func:`predictions` (what ``deit predict``'s flags set).
    Returns ``{"checkpoint", "images", "skipped", "seconds", "images_per_second",
    "predictions"}``: every record of :func:`predictions` in ``predictions``,
    or, when ``sink`` is given, each record handed to ``sink`` as it comes and
    ``predictions`` left empty, so that memory stays flat however many images
    there are (the sink also gets the records of skipped files). ``skipped``
    lists the records of files that did not decode (``skip_bad``).
    """
    records = predictions(checkpoint, paths, topk=topk, head=head, batch_size=batch_size,
                          workers=workers, skip_bad=skip_bad, progress=progress,
                          download=download)  # fmt: skip
    kept: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    start, count = time.perf_counter(), 0
    for record in records:
        if "error" in record:
            skipped.append(record)
        elif sink is None:
            kept.append(record)
        count += "error" not in record
        if sink is not None:
            sink(record)
    seconds = time.perf_counter() - start
    return {"checkpoint": str(checkpoint), "images": count, "skipped": skipped,
            "seconds": seconds, "images_per_second": count / seconds if seconds else 0.0,
            "predictions": kept}  # fmt: skip
