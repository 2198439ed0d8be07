"""Image folders made from the real CIFAR, to test and benchmark image-folder reading.

Nothing can be downloaded here, so ``data/folder.py`` is exercised on files written from CIFAR:
`export_cifar` writes it as lossless PNGs (pixel-identical, so a reader can be checked exactly);
`make_imagenet_like` builds an ImageNet look-alike from it: JPEGs of varied sizes around
500×375 in synset folders, mixed extensions, odd modes and formats, files to skip and, on
request, broken ones. `deit.data.shard_writer.write_shards` (``shards``) turns any image folder into
WebDataset shards. ``python -m deit.data.export --help``. Never commit the output.
"""

from __future__ import annotations

import argparse
import inspect
import io
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from deit.data.cifar import CIFAR, load_cifar
from deit.data.layout import DataError
from deit.data.shard_writer import write_shards

_SPECIAL = {"gray": ("L", ".JPEG"), "cmyk": ("CMYK", ".JPEG"), "rgba": ("RGBA", ".png")}
_SPECIAL |= {"palette": ("P", ".png"), "webp": ("RGB", ".webp"), "bmp": ("RGB", ".bmp")}
SPECIALS = tuple(_SPECIAL)
"""Odd files of `make_imagenet_like` (kind → mode, extension), replacing regular images."""
_OWN = ("train", "val", "classes.txt", "README.txt")  # what --overwrite may delete
_VARIANTS = {1: ".jpg", 2: ".JPG", 3: ".jpeg"}  # extension by image index mod 10; else .JPEG


class ExportError(DataError):
    """Bad input to an export (a size, a class name, an occupied output folder); one line."""


def synset_id(label: int) -> str:
    """An ImageNet-style folder name for CIFAR class ``label``: n01440764 (ImageNet's first
    synset) for 0, then increasing, so the sorted folders keep the CIFAR label order."""
    return f"n{1440764 + 100003 * label:08d}"


def _prepare(root: str | Path, overwrite: bool, create: bool = True) -> Path:
    """``root``, refused if a file or a non-empty folder without ``overwrite``; with ``create``
    made, after deleting what an export writes there (`_OWN`; nothing else is touched)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ExportError(f"output {root} is a file, not a folder")
    if not overwrite and root.is_dir() and any(root.iterdir()):
        raise ExportError(f"output folder {root} is not empty; pass --overwrite to replace it")
    for path in [root / name for name in _OWN] if create else []:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def _run(jobs: list[list], workers: int, desc: str) -> None:
    """`_write` every job (a list of files), in ``workers`` processes when > 1; a progress bar
    on a terminal."""
    spawn = multiprocessing.get_context("spawn")  # never fork a process holding torch
    with (
        tqdm(total=sum(map(len, jobs)), desc=desc, unit="img", disable=None) as bar,
        ProcessPoolExecutor(max(workers, 1), mp_context=spawn) as pool,
    ):
        for done in pool.map(_write, jobs) if workers > 1 else map(_write, jobs):
            bar.update(done)


def export_cifar(
    data: CIFAR, root: str | Path, *, train_size=0, val_size=0, workers=0, overwrite=False
) -> Path:
    """Write ``data`` as ``root/{train,val}/<class>/<index:05d>.png`` and return ``root``.

    The test split becomes ``val/``; ``index`` is the image's index in its split, class folders
    are ``data.classes``; the first ``train_size``/``val_size`` images (0: all). Lossless PNG:
    decoding gives back exactly the uint8 pixels. Only classes that receive an image get a
    folder (readers reject empty ones). ``workers`` > 1: that many spawned processes (so a
    calling script needs the usual ``if __name__ == "__main__":``).
    """
    for name in data.classes:
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            raise ExportError(f"class name {name!r} cannot be a folder name")
    splits = {"train": (data.train_images, data.train_labels, train_size)}
    splits["val"] = (data.test_images, data.test_labels, val_size)
    for split, (_, labels, size) in splits.items():
        if not 0 <= size <= len(labels):
            raise ExportError(f"{split} size {size} is not in 0..{len(labels)} ({data.name})")
    root = _prepare(root, overwrite)
    items = []
    for split, (images, labels, size) in splits.items():
        count = size or len(labels)
        pixels = images[:count].permute(0, 2, 3, 1).contiguous().numpy()
        names = [data.classes[label] for label in labels[:count].tolist()]
        for name in set(names):
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (name, image) in enumerate(zip(names, pixels, strict=True)):
            items.append((f"{root}/{split}/{name}/{i:05d}", "exact", i, image, None, None, 0))
    _run([items[i : i + 500] for i in range(0, len(items), 500)], workers, f"{data.name} → PNG")
    return root


def _render(
    main: np.ndarray, partner: np.ndarray, rng: np.random.Generator, grain: int = 0
) -> Image.Image:
    """A photo-sized RGB image from a 32×32×3 CIFAR image and a second one of its class.

    ``grain`` > 0 adds Gaussian grain of that many levels to every pixel, last (so the
    image is otherwise the same): fine detail that makes the JPEG as large as a photo's.
    """
    if rng.random() < 0.4:  # ImageNet's most common size, landscape or portrait
        width, height = (500, 375) if rng.random() < 0.8 else (375, 500)
    else:  # long side 400–640, aspect 1:1 to 16:9, one in five portrait
        long = int(rng.integers(400, 641))
        short = round(long / rng.uniform(1.0, 16 / 9))
        width, height = (short, long) if rng.random() < 0.2 else (long, short)
    source, mix = main, rng.random()
    if mix < 0.25:  # the second image blended in
        alpha = rng.uniform(0.2, 0.4)
        source = np.round(main * (1 - alpha) + partner * alpha).astype(np.uint8)
    elif mix < 0.45:  # the second image tiled along the long side
        source = np.concatenate([main, partner], axis=1 if width >= height else 0)
    pad = int(rng.integers(0, 5))
    if pad:
        source = np.pad(source, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    # a random box of the target aspect, 70–100 % of the largest one, upscaled bicubic
    rows, cols, aspect = source.shape[0], source.shape[1], width / height
    box_w, box_h = (cols, cols / aspect) if cols / rows < aspect else (rows * aspect, rows)
    scale = rng.uniform(0.7, 1.0)
    box_w, box_h = box_w * scale, box_h * scale
    left, top = rng.uniform(0, cols - box_w), rng.uniform(0, rows - box_h)
    box = (left, top, left + box_w, top + box_h)
    image = Image.fromarray(source).resize((width, height), Image.Resampling.BICUBIC, box=box)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.5:  # sensor-like noise
        noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(2, 6), (height, width, 3))
        image = Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    if grain:
        grainy = np.asarray(image, np.float32) + rng.normal(0, grain, (height, width, 3))
        image = Image.fromarray(np.clip(np.round(grainy), 0, 255).astype(np.uint8))
    return image


def _write(job: list) -> int:
    """Write each (path stem, kind, index, main, partner, seed, grain) of ``job``: the CIFAR
    image ``main`` as PNG ("exact"), else a `_render` of it saved as ``kind``."""
    for stem, kind, index, main, partner, seed, grain in job:
        if kind == "exact":
            Image.fromarray(main).save(stem + ".png")
            continue
        if kind == "not_an_image":
            Path(stem + ".jpg").write_text("Not an image: a text file named .jpg.\n")
            continue
        image = _render(main, partner, np.random.default_rng(seed), grain)
        if kind == "truncated":  # the first 60 % of a JPEG's bytes
            encoded = io.BytesIO()
            image.save(encoded, "JPEG", quality=90)
            Path(stem + ".JPEG").write_bytes(encoded.getvalue()[: encoded.tell() * 3 // 5])
            continue
        mode, extension = _SPECIAL.get(kind, ("RGB", _VARIANTS.get(index % 10, ".JPEG")))
        image = image.convert(mode)
        if mode == "RGBA":  # opaque centre, transparent border
            alpha, rows, cols = Image.new("L", image.size), image.height // 8, image.width // 8
            alpha.paste(255, (cols, rows, image.width - cols, image.height - rows))
            image.putalpha(alpha)
        image.save(stem + extension, quality=90)
    return len(job)


def make_imagenet_like(
    data: CIFAR,
    root: str | Path,
    *,
    train_per_class: int = 8,
    val_per_class: int = 2,
    seed: int = 0,
    classes: int = 10,
    bad: bool = False,
    grain: int = 0,
    workers: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write an ImageNet-like ``root/{train,val}/<synset>/`` from the first ``classes`` classes.

    Train images come from CIFAR's train split, val from its test split (drawn without
    replacement per class), each rendered by `_render` and saved as JPEG quality 90: mostly
    ``.JPEG``, some ``.jpg``/``.JPG``/``.jpeg``. Names follow ImageNet (``n01440764_3.JPEG``,
    ``ILSVRC2012_val_00000001.JPEG``). The `SPECIALS` replace train images of different classes
    (as many as fit), so every split holds exactly the requested count per class; ``bad`` adds
    ``<synset>_truncated.JPEG`` and ``<synset>_not_an_image.jpg`` on top. Also written:
    ``classes.txt`` (synset → CIFAR name), ``train/README.txt`` and a hidden ``._*.JPEG``.
    The images are smooth upscaled CIFAR (about 26 KB per JPEG, where ImageNet's average is
    about 110 KB): ``grain`` > 0 adds that much Gaussian grain to every image, so files and
    their decoding cost come nearer a photo's (20: about 100 KB). The same arguments give
    byte-identical files, with any ``workers`` (as in `export_cifar`).
    """
    if not 1 <= classes <= data.num_classes:
        raise ExportError(f"classes {classes} is not in 1..{data.num_classes} ({data.name})")
    rng, ids, items = np.random.default_rng(seed), [synset_id(k) for k in range(classes)], []
    sources = {"train": (data.train_images, data.train_labels, train_per_class)}
    sources["val"] = (data.test_images, data.test_labels, val_per_class)
    for split_index, (split, (images, labels, count)) in enumerate(sources.items()):
        pixels = images.permute(0, 2, 3, 1).numpy()
        for label, synset in enumerate(ids):
            pool = (labels == label).nonzero().flatten().numpy()
            if not 1 <= count <= len(pool):
                raise ExportError(f"{split} per class {count} is not in 1..{len(pool)}")
            picks, partners = rng.choice(pool, count, replace=False), rng.choice(pool, count)
            for i, pair in enumerate(zip(pixels[picks], pixels[partners], strict=True)):
                val = f"ILSVRC2012_val_{label * count + i + 1:08d}"
                stem = f"{root}/{split}/{synset}/{val if split_index else f'{synset}_{i}'}"
                items.append([stem, "regular", i, *pair, (seed, split_index, label, i), grain])
    for k, kind in enumerate(SPECIALS):  # spread: class k % classes, from the last train image
        label, i = k % classes, train_per_class - 1 - k // classes
        if i >= 0:
            items[label * train_per_class + i][1] = kind
    for k, kind in enumerate(("truncated", "not_an_image") if bad else ()):
        label = k % classes
        stem = f"{root}/train/{ids[label]}/{ids[label]}_{kind}"
        source = items[label * train_per_class][3:5]
        items.append([stem, kind, 0, *source, (seed, 2, label, k), grain])
    root = _prepare(root, overwrite)
    for split in sources:
        for synset in ids:
            (root / split / synset).mkdir(parents=True)
    lines = [f"{synset} {data.classes[label]}\n" for label, synset in enumerate(ids)]
    (root / "classes.txt").write_text("".join(lines))
    (root / "train" / "README.txt").write_text("Made by deit.data.export; not a class.\n")
    (root / "train" / ids[0] / f"._{ids[0]}_0.JPEG").write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    _run([items[i : i + 16] for i in range(0, len(items), 16)], workers, "ImageNet-like")
    return root


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage error in one line (without argparse's usage), exit 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m deit.data.export",
        description="Write image folders (ROOT/train/<class>/..., ROOT/val/<class>/...) from the "
        "real CIFAR, for testing and benchmarking image-folder reading, or an image folder as "
        "WebDataset shards. Never downloads.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    raw = {"formatter_class": argparse.RawDescriptionHelpFormatter}
    cifar, like = (
        commands.add_parser(
            name, help=help, description=inspect.getdoc(fn).replace("``", ""), **raw
        )
        for name, help, fn in [
            ("cifar", "CIFAR as lossless PNGs (test split as val/)", export_cifar),
            ("imagenet-like", "JPEGs around 500x375 made from CIFAR", make_imagenet_like),
        ]
    )
    for command in (cifar, like):
        command.add_argument("--data-dir", required=True, help="folder holding the CIFAR files")
        command.add_argument("--out", required=True, help="output folder, absent or empty")
        command.add_argument("--dataset", choices=("cifar10", "cifar100"), default="cifar10")
        command.add_argument("--overwrite", action="store_true", help="replace what it wrote")
    for command, flag, default, help in [
        *((command, "--workers", 0, "processes; 0 or 1: none") for command in (cifar, like)),
        (cifar, "--train-size", 0, "first N train images (0: all)"),
        (cifar, "--val-size", 0, "first N test images, written to val/ (0: all)"),
        (like, "--train-per-class", 8, "train images per class"),
        (like, "--val-per-class", 2, "val images per class (from CIFAR's test split)"),
        (like, "--classes", 10, "the first K CIFAR classes"),
        (like, "--seed", 0, "the same seed gives the same bytes"),
        (like, "--grain", 0, "grain on every image, for photo-sized files (20: ~100 KB)"),
    ]:
        command.add_argument(
            flag, type=_count, default=default, metavar="N", help=f"{help} (default {default})"
        )
    like.add_argument("--bad", action="store_true", help="add a truncated JPEG and a text .jpg")
    shards = commands.add_parser(
        "shards", help="an image folder as WebDataset shards (.jpg + .cls, info.json)",
        description=inspect.getdoc(write_shards).replace("``", ""), **raw,
    )  # fmt: skip
    shards.add_argument("--from", dest="root", required=True, help="the image folder's ROOT")
    shards.add_argument("--out", required=True, help="output folder, absent or empty")
    shards.add_argument("--per-shard", type=_count, default=1000, metavar="N",
                        help="samples per shard (default 1000)")  # fmt: skip
    shards.add_argument("--seed", type=_count, default=0, metavar="N",
                        help="the order samples are written in (default 0)")  # fmt: skip
    shards.add_argument("--overwrite", action="store_true", help="replace shards it wrote")
    return parser


def _shards(options: dict) -> int:
    """``python -m deit.data.export shards``: write, print what was written; exit status."""
    out, start = Path(options["out"]), time.perf_counter()
    try:
        if out.exists() and not out.is_dir():
            raise ExportError(f"output {out} is a file, not a folder")
        own = [*out.glob("train-*.tar"), *out.glob("val-*.tar"), out / "info.json"]
        if out.is_dir() and any(out.iterdir()) and not options["overwrite"]:
            raise ExportError(f"output folder {out} is not empty; pass --overwrite to replace it")
        for path in own if out.is_dir() else []:
            path.unlink(missing_ok=True)
        info = write_shards(options["root"], out, per_shard=options["per_shard"],
                            seed=options["seed"])  # fmt: skip
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    splits = info["splits"]
    counts = ", ".join(
        f"{s} {e['num_samples']} in {len(e['filenames'])}" for s, e in splits.items()
    )
    megabytes = sum(sum(e["shard_bytes"]) for e in splits.values()) / 1e6
    print(f"{out}: {counts} shards, {len(info['classes'])} classes, {megabytes:.1f} MB, "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2: bad input, with a one-line message)."""
    options = vars(_parser().parse_args(argv))
    if options["command"] == "shards":
        return _shards(options)
    command, dataset, data_dir, out = (
        options.pop(key) for key in ("command", "dataset", "data_dir", "out")
    )
    start = time.perf_counter()
    try:
        _prepare(out, options["overwrite"], create=False)  # before the seconds of loading
        data = load_cifar(dataset, data_dir, download=False)
        root = (export_cifar if command == "cifar" else make_imagenet_like)(data, out, **options)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files = [path for path in root.rglob("*") if path.is_file()]
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    seconds = time.perf_counter() - start
    print(f"{root}: {len(files)} files, {megabytes:.1f} MB, {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    from deit.data.export import main as _main  # pickled workers then name deit.data.export

    sys.exit(_main())
