"""The ``deit`` command line's arguments: one parser per subcommand, with help that explains."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re

from deit.config import PRESETS, TrainConfig
from deit.distributed import is_main_process
from deit.models.linear import CHOICES as CPU_LINEAR_CHOICES
from deit.teacher_recipe import TeacherConfig


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


def _add_data_args(parser: argparse.ArgumentParser) -> None:
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


def _add_run_args(parser: argparse.ArgumentParser, epochs_help: str) -> None:
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
    parser.add_argument("--epochs", type=int, help=epochs_help)
    parser.add_argument("--seed", type=int, help="seed for weights, shuffling and augmentation")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set batch_size=512 (repeatable)",
    )
    _add_data_args(parser)


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
        help="shipped teacher name or checkpoint path (default: cifar10-teacher)",
    )
    _add_run_args(p, "number of epochs (overrides the preset)")


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
    p.add_argument("--checkpoint", help="weights to start from (a .pt file)")
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
    p.add_argument("--teacher", help="shipped teacher name or checkpoint path")
    _add_run_args(p, "number of epochs (overrides the preset)")


def _attention_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention",
        help="draw where a student's class and distillation tokens attend, as a PNG",
        description="For the first N test images: the image, then the attention of the "
        "class token and of the distillation token over the patches - in the last block "
        "(averaged over heads) and by attention rollout over all blocks - laid over the "
        "image, with the predictions of every head and of the teacher as captions. Needs "
        "matplotlib (pip install 'deit[plots]').",
    )
    p.add_argument("--checkpoint", required=True, help="a deit train/finetune checkpoint")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--images", type=int, default=8, help="number of test images (default 8)")
    _add_data_args(p)


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
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field in every run, e.g. --set validation=true (repeatable)",
    )
    _add_data_args(p)


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
    _add_run_args(p, "number of epochs (default 16)")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="test accuracy of a student or teacher checkpoint",
        description="Evaluate a checkpoint written by deit train or deit teacher, an exported "
        ".safetensors teacher, or a shipped teacher name (cifar10-teacher), on the test set.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH_OR_NAME")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (teachers)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_args(p)


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files and folders with a trained student",
        description="Classify images with a student: a deit train/finetune run directory or "
        "checkpoint, an official DeiT checkpoint file, or an official name such as "
        "deit_tiny_distilled_patch16_224 (downloaded once into ~/.cache/deit/weights, or "
        "$DEIT_WEIGHTS, with its checksum checked). Each image gets exactly deit eval's "
        "preprocessing for that model (CIFAR students: the image at 32 px; folder students "
        "and official models: short side to size/crop, central crop). Folders are searched "
        "recursively for .jpg .jpeg .png .webp .bmp (any case), hidden files skipped. Images "
        "are decoded in worker processes, in batches, with a progress bar on stderr. A file "
        "that does not decode stops the command with one line naming it (exit 1) unless "
        "--skip-bad, which lists it on stderr and writes every other result.",
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR|FILE|NAME")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument(
        "--head",
        choices=["cls", "dist", "avg"],
        help="which head predicts (default: avg for a distilled student, cls otherwise)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument(
        "--workers",
        type=int,
        help="decoding processes (default: one per core; none for fewer than 256 images)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per image (JSON Lines): path, classes, indices, probs; "
        "with --skip-bad, {path, error} for a skipped file",
    )
    out.add_argument(
        "--csv", metavar="FILE", help="write path,class_1,prob_1,...,class_K,prob_K to FILE"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv FILE")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip (and list) files that do not decode"
    )
    p.add_argument("--no-download", action="store_true", help="never download official weights")


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a trained student as ONNX or for timm, and check it against PyTorch",
        description="Write the student of a run directory, checkpoint, official DeiT file or "
        "name to --out. onnx: a graph taking normalised float32 images N x 3 x S x S (dynamic "
        "batch axis) and returning logits, its preprocessing and class names in the file's "
        "metadata; the command runs the file in ONNX Runtime at batch 1 and 7 and fails "
        "(exit 1, nothing written) if any logit differs from PyTorch's by more than 1e-4. "
        "timm: the state dict in timm's names as safetensors, and the timm.create_model name "
        "and kwargs that load it with load_state_dict(strict=True); fails unless timm's "
        "logits are bit-identical. pt2: a torch.export program (dynamic batch), loaded back "
        "with torch.export.load and compared (at most 1e-5). onnx and timm need pip install "
        "'deit[onnx]' or 'deit[timm]'; pt2 only PyTorch.",
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR|FILE|NAME")
    p.add_argument("--format", required=True, choices=["onnx", "timm", "pt2"], help="what to write")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.add_argument(
        "--head",
        choices=["cls", "dist", "avg"],
        help="onnx: which head the graph outputs (default: avg for a distilled student)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-download", action="store_true", help="never download official weights")


def _data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="find, verify and describe a data set (CIFAR, an image folder or shards)",
        description="cifar10/cifar100: load CIFAR (downloading it if allowed), check every "
        "file, and print where it was found, sizes, class balance and channel statistics. "
        "folder: list an image folder in the ImageNet / torchvision ImageFolder layout, "
        "ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (classes: the sorted "
        "folder names of train/; images: .jpg .jpeg .png .webp .bmp in any case, also in "
        "subfolders of a class; hidden and other files are ignored), and print its classes "
        "and images per split; with --check decode every image and list those that fail "
        "(exit status 2 when any does). shards: the same for WebDataset shards (--data-dir: "
        "their folder, pattern or URL, as for training); --check reads every shard to its end.",
    )
    p.add_argument(
        "--dataset",
        default="cifar10",
        choices=["cifar10", "cifar100", "folder", "shards"],
        help="which data set (default: cifar10)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="CIFAR: folder holding cifar-10-batches-bin/ (or -py/), default $DEIT_DATA, else "
        "~/.cache/deit; folder: the ROOT holding train/ and val/ (required); shards: theirs",
    )
    p.add_argument(
        "--no-download",
        action="store_true",
        help="CIFAR: fail instead of downloading the data set when it is not found",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="folder, shards: decode every image in worker processes (progress on stderr), "
        "print each that fails, exit 2 if any; CIFAR files are always checked when loaded",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="training and inference img/s and GFLOP/s against the matmul ceiling",
        description="Time a training step and an inference step of DeiT-Ti/S (32 px patch 4, "
        "224 px patch 16) and of the teachers on random data, count their FLOPs with "
        "PyTorch's flop counter (attention included), and compare the achieved GFLOP/s with "
        "the best large matrix product measured in the same run (fp32; on GPUs the steps run "
        "under bf16 autocast against the bf16 ceiling). Progress goes to stderr.",
    )
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    p.add_argument("--models", nargs="+", metavar="NAME", help="students or teachers to time")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu or cuda")
    p.add_argument("--batch-size", type=int, help="one batch size for every model")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast")
    precision.add_argument("--fp32", dest="bf16", action="store_false", help="fp32 only")
    p.add_argument("--quick", action="store_true", help="batch 8, few steps: a smoke check")
    p.add_argument(
        "--cpu-linear", choices=CPU_LINEAR_CHOICES, default="auto",
        help="the CPU library of the students' linear layers (as --set cpu_linear=… in "
        "training): auto is oneDNN on an AMD Zen 5 (family 26) or later with AVX-512, the "
        "BLAS (MKL) elsewhere",
    )  # fmt: skip


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
    _attention_parser(sub)
    _eval_parser(sub)
    _predict_parser(sub)
    _export_parser(sub)
    _data_parser(sub)
    _bench_parser(sub)
    return parser
