"""The flags several of ``deit``'s subcommands share, and the config fields listed in --help."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re


def field_help(config_type: type) -> str:
    """Every field of a config dataclass, its default and its comment, one per line.

    Read from the class's source, so ``--help`` always lists exactly the
    fields there are, with the words written beside them.
    """
    comments = {}
    for line in inspect.getsource(config_type).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=\s*(.+?)\s*#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(3)
    rows = []
    for field in dataclasses.fields(config_type):
        default = field.default if field.default is not dataclasses.MISSING else ""
        setting = f"{field.name}={default!s}"
        rows.append(f"  {setting:<34} {comments.get(field.name, '')}".rstrip())
    return "\n".join(rows)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """The data-location flags shared by every subcommand that reads CIFAR."""
    parser.add_argument(
        "--data-dir",
        help="folder holding cifar-10-batches-bin/ (or -py/), or an image folder's root "
        "(with --set dataset=folder); default: $DEIT_DATA, else ~/.cache/deit",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of downloading the data set when it is not found",
    )


def add_run_args(parser: argparse.ArgumentParser, epochs_help: str) -> None:
    """The run-directory, schedule and override flags shared by train and teacher."""
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="run directory to write")
    target.add_argument(
        "--resume", metavar="DIR", help="continue the interrupted run in DIR (its saved config)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (without it, a run there is never overwritten)",
    )
    parser.add_argument(
        "--auto-resume",
        action="store_true",
        help="with --out: continue the run there if this same command started it (a relaunched "
        "torchrun job, a requeued job), else start it; settings --resume may not change are "
        "refused",
    )
    parser.add_argument("--epochs", type=int, help=epochs_help)
    parser.add_argument("--seed", type=int, help="seed for weights, shuffling and augmentation")
    add_overrides(parser, "override any config field, e.g. --set batch_size=512 (repeatable)")
    add_data_args(parser)


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )
