"""The ``deit`` command line's arguments: one parser per subcommand, with help that explains.

Here the commands that train (train, teacher, finetune, reproduce) and `build_parser`; the
others' parsers are in :mod:`.tool_parsers`, the flags they share in :mod:`.arguments`.
"""

from __future__ import annotations

import argparse

from deit.cli.arguments import add_data_args, add_overrides, add_run_args, field_help
from deit.cli.tool_parsers import (
    attention_parser,
    bench_parser,
    data_parser,
    eval_parser,
    export_parser,
    predict_parser,
)
from deit.config import PRESETS, TrainConfig
from deit.distributed import is_main_process
from deit.teacher_recipe import TeacherConfig


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a DeiT student and evaluate every head after each epoch (or every eval_every)",
        description="Train a DeiT student on CIFAR, on labels alone or distilled from a "
        "teacher that sees its own inputs. Writes OUT/config.json, OUT/metrics.jsonl (one line "
        "per epoch), OUT/checkpoint.pt (every epoch and on Ctrl-C) and OUT/summary.json; an "
        "interrupted run continues with --resume OUT. --set dataset=folder --data-dir ROOT "
        "trains on an image folder (ROOT/train/<class>/..., ROOT/val/<class>/...).",
        epilog="config fields (--set KEY=VALUE; the preset's values replace these defaults):\n"
        + field_help(TrainConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="starting config")
    p.add_argument("--student", help="model name, e.g. deit_tiny_distilled_patch4_32")
    p.add_argument(
        "--distillation",
        choices=["none", "soft", "hard"],
        help="loss: labels only, or soft/hard distillation from --teacher (default: none)",
    )
    p.add_argument(
        "--teacher",
        help="shipped teacher name, checkpoint or deit teacher run directory "
        "(default: cifar10-teacher)",
    )
    add_run_args(p, "number of epochs (overrides the preset)")


def _finetune_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a trained student (or an official DeiT checkpoint) at another resolution",
        description="Start a student from trained weights - a deit train checkpoint or an "
        "official DeiT checkpoint (timm names under a 'model' key) - at image size --img-size: "
        "the position embedding is resampled to the new patch grid (bicubic, class and "
        "distillation entries kept), heads with another class count are replaced, and CIFAR "
        "images are upsampled to the model's size on the fly (the teacher keeps its own). "
        "Same run directory, recipe flags and --resume as deit train.",
    )
    p.add_argument(
        "--checkpoint", metavar="RUN_DIR|FILE|NAME",
        help="weights to start from: a deit train run directory or checkpoint, an official DeiT "
        "checkpoint file or name",
    )  # fmt: skip
    p.add_argument("--img-size", type=int, help="the fine-tuned model's input size, e.g. 48")
    p.add_argument("--patch-size", type=int, help="new patch size (default: the checkpoint's)")
    p.add_argument(
        "--num-classes",
        type=int,
        help="classes of the new heads; must match the data set (default: the data set's)",
    )
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="recipe")
    p.add_argument(
        "--distillation", choices=["none", "soft", "hard"], help="loss (default: the preset's)"
    )
    p.add_argument(
        "--teacher", help="shipped teacher name, checkpoint or deit teacher run directory"
    )
    add_run_args(p, "number of epochs (overrides the preset)")


def _reproduce_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train the report's whole matrix (students A-E) and write its table and plots",
        description="Train the five students of the distillation matrix with one preset: "
        "A plain ViT on labels, B plain ViT on the teacher's soft targets, C plain ViT on the "
        "teacher's hard labels, D and E with a distillation token (soft, hard). Every head is "
        "evaluated. Writes OUT/results.md (the report's table next to the report's numbers and "
        "the paper's claims), OUT/results.json, OUT/curves.png and OUT/table.png, and one run "
        "directory per student (OUT/A ... OUT/E). Running the same command again skips "
        "finished runs and resumes an interrupted one. --runs trains only some of the students; "
        "the table then holds only their rows.",
    )
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="config of every run")
    p.add_argument("--out", required=True, help="directory of the matrix")
    p.add_argument(
        "--seeds", type=int, default=1, help="train every run with this many seeds (default: 1)"
    )
    p.add_argument(
        "--runs",
        metavar="LETTERS",
        help="train only these runs of the matrix, e.g. ABE (default: all five, ABCDE; "
        "with --train-sizes: AE)",
    )
    p.add_argument(
        "--train-teacher",
        action="store_true",
        help="train the teacher in OUT/teacher first instead of using the shipped one "
        "(with --train-sizes: one per size, on exactly that subset)",
    )
    p.add_argument(
        "--train-sizes",
        metavar="N,N,...",
        help="where the teacher pays: train the runs on class-balanced subsets of these sizes "
        "(e.g. 1000,5000,10000,50000) at equal compute - every run sees budget_images images "
        "(default: the preset's epochs x the whole training set) - into OUT/n<size>/, and "
        "write OUT/results.md, results.json and sizes.png (top-1 against images per class); "
        "--runs then defaults to AE",
    )
    add_overrides(p, "override a config field in every run, e.g. --set validation=true "
                  "(repeatable)")  # fmt: skip
    add_data_args(p)


def _teacher_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "teacher",
        help="train a CNN teacher on CIFAR or an image folder (resumable)",
        description="Train a teacher CNN with its own normalisation, for distillation. Writes "
        "OUT/config.json, OUT/metrics.jsonl, OUT/checkpoint.pt (rewritten atomically every few "
        "steps) and OUT/summary.json. Resume an interrupted run with --resume OUT; Ctrl-C or "
        "SIGTERM stops it cleanly. --set dataset=folder --data-dir ROOT --set img_size=N trains "
        "on an image folder, decoded once at N px.",
        epilog="config fields (--set KEY=VALUE):\n" + field_help(TeacherConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--arch", help="teacher architecture: fastcnn (default), resnet18, tv_resnet18/34/50"
    )
    add_run_args(p, "number of epochs (default 16)")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but under torchrun only rank 0 prints a usage error: every rank
    parses the same command line, and eight copies of one error would bury it."""

    def error(self, message: str):
        if is_main_process():
            super().error(message)  # prints the usage and the message, exits with 2
        self.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deit`` command and its subcommands."""
    parser = _Parser(
        prog="deit",
        description="Data-efficient image transformers with distillation through attention, "
        "trained fast on CIFAR or any image folder.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _teacher_parser(sub)
    _finetune_parser(sub)
    _reproduce_parser(sub)
    attention_parser(sub)
    eval_parser(sub)
    predict_parser(sub)
    export_parser(sub)
    data_parser(sub)
    bench_parser(sub)
    return parser
