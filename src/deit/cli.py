"""The ``deit`` command line: argument parsing only, each subcommand one library call."""

from __future__ import annotations

import argparse
import json
import sys
import time

from deit.config import PRESETS, ConfigError, apply_overrides, from_preset
from deit.data import DataError, load_cifar

EXIT_USAGE = 2


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    """The data-location flags shared by every subcommand that reads CIFAR."""
    parser.add_argument(
        "--data-dir",
        help="folder holding cifar-10-batches-bin/ (or -py/); default: $DEIT_DATA, "
        "else ~/.cache/deit",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of downloading the data set when it is not found",
    )


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a DeiT student on CIFAR and evaluate every head each epoch",
        description="Train a DeiT student on CIFAR labels. Writes OUT/config.json, "
        "OUT/metrics.jsonl (one line per epoch), OUT/checkpoint.pt and OUT/summary.json.",
    )
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="starting config")
    p.add_argument("--student", help="model name, e.g. deit_tiny_distilled_patch4_32")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--epochs", type=int, help="number of epochs (overrides the preset)")
    p.add_argument("--seed", type=int, help="seed for weights, shuffling and augmentation")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set lr=1e-3 (repeatable)",
    )
    _add_data_args(p)


def _data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="find, verify and describe a CIFAR data set",
        description="Load CIFAR-10 or CIFAR-100 (downloading it if allowed), check every "
        "file, and print where it was found, sizes, class balance and channel statistics.",
    )
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_args(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deit`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="deit",
        description="Data-efficient image transformers with distillation through attention, "
        "trained fast on CIFAR.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _data_parser(sub)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """``deit train``: build the config from preset, flags and overrides; train."""
    from deit.trainer import train

    config = from_preset(
        args.preset,
        student=args.student,
        epochs=args.epochs,
        seed=args.seed,
        data_dir=args.data_dir,
        download=False if args.no_download else None,
    )
    config = apply_overrides(config, args.overrides)
    summary = train(config, args.out, command=["deit", *sys.argv[1:]])
    heads = ", ".join(f"{k} {v:.2f}%" for k, v in summary["test_top1"].items())
    print(f"done in {summary['wall_seconds']:.0f} s: {summary['evaluated_on']} top-1 {heads}")
    print(f"run directory: {args.out}")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """``deit data``: load and describe a data set."""
    start = time.perf_counter()
    data = load_cifar(args.dataset, args.data_dir, download=not args.no_download)
    seconds = time.perf_counter() - start
    pixels = data.train_images.float().div_(255)
    report = {
        "dataset": data.name,
        "root": str(data.root),
        "train": len(data.train_labels),
        "test": len(data.test_labels),
        "classes": list(data.classes),
        "train_per_class": data.train_labels.bincount().tolist(),
        "mean": [round(v, 4) for v in pixels.mean((0, 2, 3)).tolist()],
        "std": [round(v, 4) for v in pixels.std((0, 2, 3)).tolist()],
        "load_seconds": round(seconds, 3),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['dataset']} at {report['root']} (loaded and checked in {seconds:.2f} s)")
    print(f"  train {report['train']} images, test {report['test']}, {len(data.classes)} classes")
    print(f"  train images per class: min {min(report['train_per_class'])}, "
          f"max {max(report['train_per_class'])}")  # fmt: skip
    print(f"  channel mean {report['mean']}, std {report['std']}")
    return 0


COMMANDS = {"train": run_train, "data": run_data}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deit`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError) as err:
        print(f"deit {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"deit {args.command}: interrupted", file=sys.stderr)
        return 130
