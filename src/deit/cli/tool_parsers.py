"""The parsers of the commands that use what was trained, or look at data and hardware:
attention, eval, predict, export, data and bench."""

from __future__ import annotations

import argparse

from deit.cli.arguments import add_data_args
from deit.models.linear import CHOICES as CPU_LINEAR_CHOICES


def attention_parser(sub: argparse._SubParsersAction) -> None:
    """``deit attention``: the checkpoint, the PNG to write, how many test images."""
    p = sub.add_parser(
        "attention",
        help="draw where a student's class and distillation tokens attend, as a PNG",
        description="For the first N test images: the image, then the attention of the "
        "class token and of the distillation token over the patches - in the last block "
        "(averaged over heads) and by attention rollout over all blocks - laid over the "
        "image, with the predictions of every head and of the teacher as captions. Needs "
        "matplotlib (pip install 'deit[plots]').",
    )
    p.add_argument(
        "--checkpoint", required=True, metavar="RUN_DIR|FILE",
        help="a deit train/finetune run directory or its checkpoint",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--images", type=int, default=8, help="number of test images (default 8)")
    add_data_args(p)


def eval_parser(sub: argparse._SubParsersAction) -> None:
    """``deit eval``: the checkpoint (or shipped name) and where the test set is."""
    p = sub.add_parser(
        "eval",
        help="test accuracy of a student or teacher checkpoint",
        description="Evaluate a run directory or checkpoint written by deit train, finetune or "
        "teacher, an exported .safetensors teacher, or a shipped teacher name (cifar10-teacher), "
        "on the whole test set of its data set (an image folder's val/, the val shards).",
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR|FILE|NAME")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (teachers)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_args(p)


def predict_parser(sub: argparse._SubParsersAction) -> None:
    """``deit predict``: the model, the image files and folders, and how results are written."""
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


def export_parser(sub: argparse._SubParsersAction) -> None:
    """``deit export``: the model, the format (onnx, timm, pt2) and the file to write."""
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


def data_parser(sub: argparse._SubParsersAction) -> None:
    """``deit data``: which data set, where, and whether to decode every image."""
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
        "--val-shards",
        metavar="SPEC",
        help="shards: the val shards' folder, pattern or URL when --data-dir's pattern does not "
        "imply them (as training's --set val_shards=SPEC)",
    )
    p.add_argument(
        "--shard-info",
        metavar="SOURCE",
        help="shards: their info file (a path, URL or pipe: command) when none is beside them "
        "(as training's --set shard_info=SOURCE); without one every shard is read to count it",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="folder, shards: decode every image in worker processes (progress on stderr), "
        "print each that fails, exit 2 if any; CIFAR files are always checked when loaded",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def bench_parser(sub: argparse._SubParsersAction) -> None:
    """``deit bench``: the models, device, batch size and precision to time."""
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
