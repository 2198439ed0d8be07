"""Image-folder loader throughput: StreamLoader against decoding alone and against timm's loader.

Images per second delivered into the training process at 224 px, from an ImageNet-like folder
(``python -m deit.data.export imagenet-like ...``), for N worker processes (default 1 and 2):

- ``decode``: ``deit.data.decode.decode_rgb`` full decode of every file with the loader's own
  decoder (simplejpeg for JPEGs, Pillow for the rest), in N DataLoader workers returning only
  a tiny tensor: the decoding limit for N workers, the issue's ≥ 90 % baseline;
- ``decode (Pillow)``: the same with Pillow for every file (``open_rgb``), the old decoder;
- ``ours``: ``StreamLoader(mode="train", batch_size=128, size=224, workers=N)``, one epoch of
  uint8 B×3×224×224 batches as the trainer receives them on a CPU device (random-resized crop
  resized in the workers; flips etc. run later on the device);
- ``ours, crops``: the same with ``resize_on_device=True``, the GPU path's worker side: the
  packed uint8 crops delivered, their resize (done by the GPU) not counted; with CUDA also
  ``ours, cuda resize``: the resized batches on the GPU, synchronised;
- ``ours (Pillow decode)``: ``ours`` with simplejpeg switched off (the old decoder);
- with ``--shards DIR`` (the folder written as WebDataset shards, ``python -m
  deit.data.export shards``): ``ours, shards`` and ``ours, shards crops``, the same two paths
  through ``ShardLoader``, ``--repeat`` epochs of the shards per measurement;
- ``timm``: ``timm.data.create_loader`` over a ``timm.data.ImageDataset`` reading the same
  files, ``is_training=True``, bicubic, ``use_prefetcher=False``: ``timm default`` keeps
  create_loader's training transform (RRC + flip + ColorJitter 0.4 + ToTensor + Normalize,
  float32); ``timm rrc+flip uint8`` has color_jitter=None, auto_augment=None, re_prob=0 and
  ``MaybePILToTensor`` (timm's prefetcher transform) instead of float normalisation.

timm is not a dependency: it is timed only when importable ("not installed" otherwise). Every
loader keeps its workers (persistent); after one warm-up pass of each (page cache, worker
start), ``--rounds`` rounds each time every variant once, so a shared machine disturbs all
alike; ratios are paired per round. The file list is repeated ``--repeat`` times per epoch so
that the last, partly idle batches of an epoch weigh little, as on ImageNet. ``--markdown``
writes the tables (with the cores needed to feed a GPU) for benchmarks/RESULTS.md.

    python benchmarks/loader_speed.py --root ROOT --json OUT.json --markdown OUT.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import PIL
import torch
from PIL import features
from torch.utils.data import DataLoader, Dataset

from deit.data import decode, packing, resize, shard_loader, stream, transforms
from deit.data.folder import open_rgb, scan_folder
from deit.data.shards import find_shards
from deit.hardware import hardware

REFERENCES = ("decode", "timm default", "timm rrc+flip uint8")


class DecodeOnly(Dataset):
    """Full decode of each file; returns only the image's height."""

    def __init__(self, paths: list[str], pillow: bool) -> None:
        self.paths, self.pillow = paths, pillow

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        if self.pillow:
            return torch.tensor(open_rgb(path).height)
        return torch.tensor(len(decode.decode_rgb(decode.read_file(path), path)))


@contextlib.contextmanager
def pillow_only(active: bool):
    """simplejpeg switched off in this process (and in workers forked meanwhile)."""
    saved = decode.simplejpeg
    decode.simplejpeg = None if active else saved
    try:
        yield
    finally:
        decode.simplejpeg = saved


def decode_workers(paths: list[str], batch: int, workers: int, pillow: bool):
    loader = DataLoader(DecodeOnly(paths, pillow), batch, num_workers=workers,
                        persistent_workers=True)  # fmt: skip

    def epoch() -> int:
        with pillow_only(pillow):
            return sum(len(heights) for heights in loader)

    return epoch


def ours(samples: list, batch: int, size: int, workers: int, way: str):
    """StreamLoader epochs; ``way``: "cpu", "crops" (device path, resize not counted),
    "cuda" (device path on the GPU) or "pillow" (cpu, Pillow decoder)."""
    device = "cuda" if way == "cuda" else "cpu"
    on_device = way in ("crops", "cuda")
    loader = stream.StreamLoader(samples, batch, size=size, mode="train", workers=workers,
                                 device=device, resize_on_device=on_device)  # fmt: skip
    state = {"epoch": 0}

    def epoch() -> int:
        state["epoch"] += 1
        loader.set_epoch(state["epoch"])
        with pillow_only(way == "pillow"), contextlib.ExitStack() as stack:
            if way == "crops":  # the main process skips the resize a GPU would do
                stack.enter_context(_patched(stream, "resize_crops", lambda f, shapes, s: shapes))
            count = sum(len(images) for images, _ in loader)
            if way == "cuda":
                torch.cuda.synchronize()
        return count

    return epoch


def shards_loader(root: str, batch: int, size: int, workers: int, way: str, repeat: int):
    """ShardLoader, ``repeat`` epochs per call; ``way``: "cpu", or "crops" (the GPU path's
    workers: the crops' trip to the device and their resize, a GPU's work, not counted)."""
    loader = shard_loader.ShardLoader(find_shards(root, "train"), batch, size=size,
                                      workers=workers, resize_on_device=way == "crops")  # fmt: skip
    state = {"epoch": 0}

    def count_only(self, batch: list) -> tuple:
        return torch.empty(len(batch)), None

    def epoch() -> int:
        count = 0
        with contextlib.ExitStack() as stack:
            if way == "crops":
                stack.enter_context(_patched(shard_loader.ShardLoader, "_to_device", count_only))
            for _ in range(repeat):
                state["epoch"] += 1
                loader.set_epoch(state["epoch"])
                count += sum(len(images) for images, _ in loader)
        return count

    return epoch


@contextlib.contextmanager
def _patched(module, name: str, value):
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def timm_loader(samples: list, root: str, batch: int, size: int, workers: int, reduced: bool):
    """timm's training loader over ``samples`` (``None``: timm not importable)."""
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
    return lambda: sum(len(batch[0]) for batch in loader)


STAGES = ("read", "header", "decode", "crop", "resize", "collate")


def profile(samples: list, batch: int, size: int) -> dict[str, float]:
    """ms per image of each step of ``train_image`` + collate (into shared memory in a
    worker; a plain stack here), in this process."""
    spent = dict.fromkeys(STAGES, 0.0)
    rng, items, clock = np.random.default_rng(0), [], time.perf_counter

    def timed(stage: str, fn, *args):
        start = clock()
        result = fn(*args)
        spent[stage] += clock() - start
        return result

    for k, (path, label) in enumerate(samples):  # the steps of transforms.train_crop
        data = timed("read", decode.read_file, path)
        width, height = timed("header", decode.image_size, data, path)
        left, top, w, h = transforms.crop_params(width, height, rng)
        s = decode.jpeg_reduction(data, min(w, h) / size)
        image = timed("decode", decode.decode_rgb, data, path, s)
        view = transforms.cut(image, (left, top, w, h), s, (width, height))
        crop = timed("crop", np.ascontiguousarray, view)
        items.append((timed("resize", resize.resize_uint8, crop, size, size), label, None))
        if len(items) == batch or k == len(samples) - 1:
            timed("collate", packing.stack_items, items)
            items = []
    return {stage: 1000 * seconds / len(samples) for stage, seconds in spent.items()}


def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    found |= {"pillow": PIL.__version__, "numpy": np.__version__}
    found["pillow_libjpeg"] = features.version("jpg")
    found["pillow_libjpeg_turbo"] = features.check_feature("libjpeg_turbo")
    for name in ("simplejpeg", "torchvision", "timm"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = "not installed"
    return found


def _line(stages: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in stages.items())


def build(args, samples: list, root: str) -> tuple[dict, bool]:
    """The timed variants, keyed by (name, workers); and whether timm was missing."""
    b, s, paths = args.batch, args.size, [path for path, _ in samples]
    variants: dict[tuple[str, int], object] = {}
    timm_missing = args.no_timm
    for n in args.workers:
        variants[("decode", n)] = decode_workers(paths, b, n, pillow=False)
        variants[("decode (Pillow)", n)] = decode_workers(paths, b, n, pillow=True)
        variants[("ours", n)] = ours(samples, b, s, n, "cpu")
        variants[("ours, crops", n)] = ours(samples, b, s, n, "crops")
        if torch.cuda.is_available():
            variants[("ours, cuda resize", n)] = ours(samples, b, s, n, "cuda")
        variants[("ours (Pillow decode)", n)] = ours(samples, b, s, n, "pillow")
        if args.shards:
            for name, way in (("ours, shards", "cpu"), ("ours, shards crops", "crops")):
                variants[(name, n)] = shards_loader(args.shards, b, s, n, way, args.repeat)
        for name, reduced in (("timm default", False), ("timm rrc+flip uint8", True)):
            fn = None if timm_missing else timm_loader(samples, root, b, s, n, reduced)
            timm_missing = fn is None
            if fn is not None:
                variants[(name, n)] = fn
    return variants, timm_missing and not args.no_timm


def summarise(times: dict, counts: dict) -> tuple[list, dict]:
    """Rows (median, min, max img/s of each variant) and the paired ratios of ours."""
    rows, ratios = [], {}
    for key, rates in times.items():
        median = statistics.median(rates)
        row = dict(variant=key[0], workers=key[1], images=counts[key], img_s=rates)
        rows.append(row | dict(median=median, min=min(rates), max=max(rates)))
        if not key[0].startswith("ours"):
            continue
        for ref in REFERENCES:
            if (ref, key[1]) in times:
                other = times[(ref, key[1])]  # paired: measured in the same round
                per_round = [x / y for x, y in zip(rates, other, strict=True)]
                ratios[f"{key[0]} / {ref}, N={key[1]}"] = dict(
                    of_medians=median / statistics.median(other),
                    median_per_round=statistics.median(per_round),
                    per_round=per_round,
                )
    return rows, ratios


GPUS = (("V100 (2 536 / 3 img/s)", 2536 / 3), ("H100, 3× V100", 2536.0),
        ("H100, 4× V100", 3380.0), ("H100, 6× V100", 5070.0))  # fmt: skip
"""Assumed DeiT-Ti training img/s at 224 px (as in RESULTS.md: the paper's V100 inference
throughput / 3 for training; an H100 3-6× a V100, not measured)."""


def markdown(report: dict) -> str:
    """The report as markdown: results, paired ratios against the targets, profile, cores."""
    workers = report["workers"]
    by = {(r["variant"], r["workers"]): r for r in report["results"]}
    names = list(dict.fromkeys(r["variant"] for r in report["results"]))
    v = report["versions"]
    machine = report["machine"]
    family = f" ({machine['cpu_family']})" if "cpu_family" in machine else ""  # one name, many
    lines = [
        f"# Image-folder loader at {report['size']} px, {report['date']}", "",
        f"{machine.get('cpu', '?')}{family}, {report['cpus']} CPUs available; "
        f"torch {v['torch']}, simplejpeg {v['simplejpeg']}, Pillow {v['pillow']} "
        f"(libjpeg-turbo: {v['pillow_libjpeg_turbo']}), timm {v['timm']}. "
        f"Load average at the start {report['load_before']}, at the end {report['load_after']}.",
        "", f"`{report['command']}`", "",
        f"{report['files_per_epoch']} files per epoch ({report['repeat']} × the train split of "
        f"{report['root']}, {report.get('mean_file_kb', 0):.0f} KB per file on average), "
        f"batch {report['batch']}, {report['rounds']} rounds after a warm-up; "
        "img/s into the training process, median of the rounds [min–max].", "",
        "| variant | " + " | ".join(f"N={n}" for n in workers) + " |",
        "|---|" + "---:|" * len(workers),
    ]  # fmt: skip
    for name in names:
        cells = [by.get((name, n)) for n in workers]
        lines.append(f"| {name} | " + " | ".join(
            f"{c['median']:,.0f} [{c['min']:,.0f}–{c['max']:,.0f}]" if c else "–" for c in cells
        ) + " |")  # fmt: skip
    lines += ["", "Paired ratios (median of the per-round ratios [range]); targets: "
              "ours ÷ decode ≥ 0.90, ours ÷ timm ≥ 1.5 (stretch 2.5).", "",
              "| ratio | value | range |", "|---|---:|---:|"]  # fmt: skip
    for name, ratio in report["ratios"].items():
        rounds = ratio["per_round"]
        lines.append(f"| {name} | {ratio['median_per_round']:.2f} | "
                     f"{min(rounds):.2f}–{max(rounds):.2f} |")  # fmt: skip
    if report["timm"]:
        lines.append(f"\ntimm: {report['timm']} (its rows and ratios are missing).")
    stages = report["profile_ms_per_image"]
    lines += ["", "Profile, one process, median ms per image: " + _line(stages) + ".", ""]
    for label, key in (("CPU path (resize in the workers)", "ours"),
                       ("GPU path (workers decode and crop)", "ours, crops")):  # fmt: skip
        one = by.get((key, 1))
        if one is None:
            continue
        per_core = one["median"]
        lines += [f"Cores to feed one GPU training DeiT-Ti at 224 px, {label}: "
                  f"{per_core:,.0f} img/s per worker core (N=1 median), workers assumed to "
                  "scale with cores; add one core for the training process.", "",
                  "| GPU | training img/s (assumed) | cores |", "|---|---:|---:|"]  # fmt: skip
        lines += [f"| {gpu} | {rate:,.0f} | {rate / per_core:.1f} |" for gpu, rate in GPUS]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--root", required=True, help="ROOT/train/<class>/...")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="N to compare")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="file list repeats per epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as in workers)")
    parser.add_argument("--no-timm", action="store_true", help="skip timm even if installed")
    parser.add_argument("--shards", metavar="DIR", help="ROOT written as shards: time them too")
    parser.add_argument("--json", metavar="OUT", help="write every measurement here")
    parser.add_argument("--markdown", metavar="OUT", help="write the tables here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    folder = scan_folder(args.root)
    samples = list(folder.train) * args.repeat
    variants, timm_missing = build(args, samples, str(folder.root / "train"))
    print(f"{len(samples)} files per epoch ({len(folder.train)} × {args.repeat}), "
          f"batch {args.batch}")  # fmt: skip
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
            print(f"round {r + 1}  {key[0]:<22} N={key[1]}  {times[key][-1]:7.1f} img/s")
        stages.append(profile(samples[: len(folder.train)], args.batch, args.size))
        print(f"round {r + 1}  profile (ms/img)  " + _line(stages[-1]))
    stages = {k: statistics.median(p[k] for p in stages) for k in stages[0]}
    stages["sum"] = sum(stages.values())
    rows, ratios = summarise(times, counts)

    print(f"\n{'variant':<22} {'N':>2} {'median':>8} {'min':>7} {'max':>7}  img/s")
    for row in rows:
        print(f"{row['variant']:<22} {row['workers']:>2} {row['median']:8.1f} "
              f"{row['min']:7.1f} {row['max']:7.1f}")  # fmt: skip
    print(f"\n{'ratio':<44} {'of medians':>10} {'median per round':>17}  per round")
    for name, ratio in ratios.items():
        rounds = " ".join(f"{x:.2f}" for x in ratio["per_round"])
        print(f"{name:<44} {ratio['of_medians']:10.2f} {ratio['median_per_round']:17.2f}  {rounds}")
    print("profile, one process, median ms/img:  " + _line(stages))
    if timm_missing:
        print("timm: not installed")
    report = dict(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine=hardware(), cpus=len(os.sched_getaffinity(0)), versions=versions(),
        command=" ".join(["python benchmarks/loader_speed.py", *(argv or sys.argv[1:])]),
        load_before=load_before, load_after=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        root=str(folder.root), files_per_epoch=len(samples), repeat=args.repeat,
        mean_file_kb=statistics.mean(os.path.getsize(path) for path, _ in folder.train) / 1e3,
        batch=args.batch, size=args.size, rounds=args.rounds, workers=args.workers,
        timm="not installed" if timm_missing else None, ratios=ratios, results=rows,
        profile_ms_per_image=stages,
    )  # fmt: skip
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
