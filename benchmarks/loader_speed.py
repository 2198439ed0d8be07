"""Image-folder loader throughput: StreamLoader against decoding alone and against timm's loader.

Images per second delivered into the training process at 224 px, from an ImageNet-like folder
(``python -m deit.data.export imagenet-like ...``), for 0/1/2 worker processes:

- ``decode``: ``deit.data.folder.open_rgb`` full decode of every file (Pillow), in this process
  and in N DataLoader workers returning only a tiny tensor: the decoding limit for N workers;
- ``ours``: ``StreamLoader(mode="train", batch_size=128, size=224, workers=N)``, one epoch of
  uint8 batches as the trainer receives them (random-resized crop; flips etc. on the device);
- ``timm``: ``timm.data.create_loader`` over a ``timm.data.ImageDataset`` reading the same
  files, ``is_training=True``, bicubic, ``use_prefetcher=False``: ``timm default`` keeps
  create_loader's training transform (RRC + flip + ColorJitter 0.4 + ToTensor + Normalize,
  float32); ``timm rrc+flip uint8`` has color_jitter=None, auto_augment=None, re_prob=0 and
  ``MaybePILToTensor`` (timm's prefetcher transform) instead of float normalisation.

timm is not a dependency of the package: it is imported only to time it ("not installed"
otherwise). Every loader keeps its workers (persistent); after one warm-up pass of each
(page cache, worker start), ``--rounds`` rounds each time every variant once, so a shared
machine disturbs all variants alike. The file list is repeated ``--repeat`` times per epoch
so that the last, partly idle batches of an epoch weigh little, as on ImageNet.

    python benchmarks/loader_speed.py --root /work/gen/inet-bench --json OUT.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import time

import numpy as np
import PIL
import torch
from PIL import features
from torch.utils.data import DataLoader, Dataset

from deit.data import stream, transforms
from deit.data.folder import open_rgb, scan_folder
from deit.hardware import hardware


class DecodeOnly(Dataset):
    """Full decode of each file with ``open_rgb``; returns only the image size."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(open_rgb(self.paths[index]).size)


def decode_in_process(paths: list[str]):
    """One epoch of single-process decoding; returns the image count."""

    def epoch() -> int:
        for path in paths:
            open_rgb(path)
        return len(paths)

    return epoch


def drain(loader) -> int:
    """Iterate ``loader`` once; the number of images (first dimension of the first item)."""
    return sum(len(batch[0]) for batch in loader)


def decode_workers(paths: list[str], batch: int, workers: int):
    loader = DataLoader(DecodeOnly(paths), batch, num_workers=workers, persistent_workers=True)
    return lambda: sum(len(sizes) for sizes in loader)


def ours(samples: list, batch: int, size: int, workers: int):
    loader = stream.StreamLoader(samples, batch, size=size, mode="train", workers=workers)
    state = {"epoch": 0}

    def epoch() -> int:
        state["epoch"] += 1
        loader.set_epoch(state["epoch"])
        return drain(loader)

    return epoch


def timm_loader(samples: list, root: str, batch: int, size: int, workers: int, reduced: bool):
    """timm's training loader over ``samples`` (``None``: timm not installed)."""
    try:
        import timm.data
    except ImportError:
        return None
    dataset = timm.data.create_dataset("", root=root)
    dataset.reader.samples = list(samples)  # the same files (timm skips .webp/.bmp, not ._*)
    common = dict(input_size=(3, size, size), is_training=True, interpolation="bicubic")
    extra = dict(color_jitter=None, auto_augment=None, re_prob=0.0) if reduced else {}
    loader = timm.data.create_loader(
        dataset, batch_size=batch, num_workers=workers, use_prefetcher=False, no_aug=False,
        device=torch.device("cpu"), **common, **extra,
    )  # fmt: skip
    if reduced:  # RRC + flip + PIL → uint8 tensor: timm's transform for its prefetcher
        dataset.transform = timm.data.create_transform(**common, **extra, use_prefetcher=True)
    return lambda: drain(loader)


STAGES = ("header", "decode", "crop-resize", "to-tensor", "collate", "to-shm")


def profile(samples: list, batch: int, size: int) -> dict[str, float]:
    """ms per image of each stage of ``train_image`` + collate + the move into shared memory
    (what pickling a batch to the main process costs a worker), in this process."""
    spent = dict.fromkeys(STAGES, 0.0)
    rng, items, clock = np.random.default_rng(0), [], time.perf_counter

    def timed(stage: str, fn, *args, **kwargs):
        start = clock()
        result = fn(*args, **kwargs)
        spent[stage] += clock() - start
        return result

    for k, (path, label) in enumerate(samples):  # the steps of deit.data.transforms.train_image
        width, height = timed("header", transforms._header_size, path)
        left, top, w, h = transforms.crop_params(width, height, rng)
        r = min(w, h) / size
        draft = (math.ceil(width / r), math.ceil(height / r)) if r >= 2 else None
        image = timed("decode", open_rgb, path, draft)
        sx, sy = transforms._draft_factor((width, height), image.size)
        box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        image = timed("crop-resize", image.resize, (size, size), transforms.BICUBIC, box=box)
        items.append((timed("to-tensor", transforms.to_tensor, image), label, None))
        if len(items) == batch or k == len(samples) - 1:
            images = timed("collate", stream.collate, items)[0]
            timed("to-shm", images.share_memory_)
            items = []
    return {stage: 1000 * seconds / len(samples) for stage, seconds in spent.items()}


def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    found |= {"pillow": PIL.__version__, "numpy": np.__version__}
    found["libjpeg"] = features.version("jpg")
    found["libjpeg_turbo"] = features.check_feature("libjpeg_turbo")
    for name in ("torchvision", "timm"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = "not installed"
    return found


def _line(stages: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in stages.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--root", default="/work/gen/inet-bench", help="ROOT/train/<class>/...")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="N to compare")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="file list repeats per epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as in workers)")
    parser.add_argument("--no-timm", action="store_true", help="skip timm even if installed")
    parser.add_argument("--json", metavar="OUT", help="write every measurement here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    folder = scan_folder(args.root)
    samples = list(folder.train) * args.repeat
    paths = [path for path, _ in samples]
    root, b, s = str(folder.root / "train"), args.batch, args.size
    variants: dict[tuple[str, int], object] = {("decode", 0): decode_in_process(paths)}
    variants[("ours", 0)] = ours(samples, b, s, 0)
    timm_missing = args.no_timm
    for n in args.workers:
        variants[("decode", n)] = decode_workers(paths, b, n)
        variants[("ours", n)] = ours(samples, b, s, n)
        for name, reduced in (("timm default", False), ("timm rrc+flip uint8", True)):
            fn = None if timm_missing else timm_loader(samples, root, b, s, n, reduced)
            timm_missing = fn is None
            if fn is not None:
                variants[(name, n)] = fn

    print(f"{len(samples)} files per epoch ({len(folder.train)} × {args.repeat}), batch {b}")
    for fn in variants.values():  # warm-up: page cache, worker start
        fn()
    times: dict[tuple[str, int], list[float]] = {key: [] for key in variants}
    counts: dict[tuple[str, int], int] = {}
    stages: list = []
    for r in range(args.rounds):
        for key, fn in variants.items():
            start = time.perf_counter()
            counts[key] = fn()
            times[key].append(counts[key] / (time.perf_counter() - start))
            print(f"round {r + 1}  {key[0]:<20} N={key[1]}  {times[key][-1]:7.1f} img/s")
        stages.append(profile(samples, b, s))
        print(f"round {r + 1}  profile (ms/img)  " + _line(stages[-1]))
    stages = {k: statistics.median(p[k] for p in stages) for k in stages[0]}
    stages["sum"] = sum(stages.values())

    rows, ratios = [], {}
    for key, rates in times.items():
        median = statistics.median(rates)
        row = dict(variant=key[0], workers=key[1], images=counts[key], img_s=rates)
        rows.append(row | dict(median=median, min=min(rates), max=max(rates)))
        for ref in ("decode", "timm default", "timm rrc+flip uint8"):
            if key[0] == "ours" and (ref, key[1]) in times:
                other = times[(ref, key[1])]  # paired: measured in the same round
                per_round = [x / y for x, y in zip(rates, other, strict=True)]
                ratios[f"ours / {ref}, N={key[1]}"] = dict(
                    of_medians=median / statistics.median(other),
                    median_per_round=statistics.median(per_round),
                    per_round=per_round,
                )

    print(f"\n{'variant':<20} {'N':>2} {'median':>8} {'min':>7} {'max':>7}  img/s")
    for row in rows:
        print(
            f"{row['variant']:<20} {row['workers']:>2} {row['median']:8.1f} "
            f"{row['min']:7.1f} {row['max']:7.1f}"
        )
    print(f"\n{'ratio':<36} {'of medians':>10} {'median per round':>17}  per round")
    for name, ratio in ratios.items():
        rounds = " ".join(f"{x:.2f}" for x in ratio["per_round"])
        print(f"{name:<36} {ratio['of_medians']:10.2f} {ratio['median_per_round']:17.2f}  {rounds}")
    print("profile, one process, median ms/img:  " + _line(stages))
    if timm_missing and not args.no_timm:
        print("timm: not installed")
    if args.json:
        report = dict(
            date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            machine=hardware(), cpus=len(os.sched_getaffinity(0)),
            versions=versions(), root=str(folder.root), files_per_epoch=len(samples),
            repeat=args.repeat, batch=b, size=s, rounds=args.rounds,
            timm="not installed" if timm_missing and not args.no_timm else None,
            ratios=ratios, results=rows, profile_ms_per_image=stages,
        )  # fmt: skip
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
