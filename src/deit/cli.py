"""The ``deit`` command line: argument parsing only, each subcommand one library call."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import deit
from deit.checkpoint import CheckpointError, WriteError
from deit.config import PRESETS, ConfigError, TrainConfig, build_config, parse_overrides
from deit.data import DataError
from deit.distributed import is_main_process
from deit.rundir import RunInterrupted

EXIT_USAGE = 2  # bad input, refused before any work
EXIT_FAILED = 1  # the run failed (a write, a non-finite loss); its last checkpoint is kept


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
        help="train a DeiT student on CIFAR and evaluate every head each epoch",
        description="Train a DeiT student on CIFAR, on labels alone or distilled from a "
        "teacher that sees its own inputs. Writes OUT/config.json, OUT/metrics.jsonl (one line "
        "per epoch), OUT/checkpoint.pt (every epoch and on Ctrl-C) and OUT/summary.json; an "
        "interrupted run continues with --resume OUT.",
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
        "finished runs and resumes an interrupted one.",
    )
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="config of every run")
    p.add_argument("--out", required=True, help="directory of the matrix")
    p.add_argument(
        "--seeds", type=int, default=1, help="train every run with this many seeds (default: 1)"
    )
    p.add_argument(
        "--train-teacher",
        action="store_true",
        help="train the teacher in OUT/teacher first instead of using the shipped one",
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
        help="train a CNN teacher on CIFAR (resumable)",
        description="Train a teacher CNN with its own normalisation, for distillation. Writes "
        "OUT/config.json, OUT/metrics.jsonl, OUT/checkpoint.pt (rewritten atomically every few "
        "steps) and OUT/summary.json. Resume an interrupted run with --resume OUT.",
    )
    p.add_argument("--arch", help="teacher architecture: fastcnn (default) or resnet18")
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


def _data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="find, verify and describe a data set (CIFAR or an image folder)",
        description="cifar10/cifar100: load CIFAR (downloading it if allowed), check every "
        "file, and print where it was found, sizes, class balance and channel statistics. "
        "folder: list an image folder in the ImageNet / torchvision ImageFolder layout, "
        "ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (classes: the sorted "
        "folder names of train/; images: .jpg .jpeg .png .webp .bmp in any case, also in "
        "subfolders of a class; hidden and other files are ignored), and print its classes "
        "and images per split; with --check decode every image and list those that fail "
        "(exit status 2 when any does).",
    )
    p.add_argument(
        "--dataset",
        default="cifar10",
        choices=["cifar10", "cifar100", "folder"],
        help="which data set (default: cifar10)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="CIFAR: folder holding cifar-10-batches-bin/ (or -py/), default $DEIT_DATA, else "
        "~/.cache/deit; folder: the ROOT holding train/ and val/ (required)",
    )
    p.add_argument(
        "--no-download",
        action="store_true",
        help="CIFAR: fail instead of downloading the data set when it is not found",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="folder: decode every image in worker processes (progress on stderr), print each "
        "that fails, exit 2 if any; CIFAR files are always checked when loaded",
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deit`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="deit",
        description="Data-efficient image transformers with distillation through attention, "
        "trained fast on CIFAR.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _teacher_parser(sub)
    _finetune_parser(sub)
    _reproduce_parser(sub)
    _attention_parser(sub)
    _eval_parser(sub)
    _data_parser(sub)
    _bench_parser(sub)
    return parser


def _command() -> list[str]:
    """The command line as the user typed it, for the run's summary."""
    return ["deit", *sys.argv[1:]]


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The config fields set by flags (those given) and where the data is."""
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if args.data_dir is not None:
        given["data_dir"] = args.data_dir
    if args.no_download:
        given["download"] = False
    return given


def _print_run(summary: dict, out: str) -> int:
    """Print the result of a finished training run (rank 0 only under torchrun)."""
    if is_main_process():
        heads = ", ".join(f"{k} {v:.2f}%" for k, v in summary["test_top1"].items())
        print(f"done in {summary['wall_seconds']:.0f} s: {summary['evaluated_on']} top-1 {heads}")
        print(f"run directory: {out}")
    return 0


def _train_or_resume(args: argparse.Namespace, start) -> int:
    """``--resume DIR`` continues a student run; else ``start(config)`` begins one in --out."""
    given = _given(args, "student", "distillation", "teacher", "epochs", "seed")
    if args.resume:
        changes = given | parse_overrides(TrainConfig, args.overrides)
        summary = deit.train(changes, args.resume, resume=True, command=_command())
        return _print_run(summary, args.resume)
    return _print_run(start(build_config(args.preset, given, args.overrides)), args.out)


def run_train(args: argparse.Namespace) -> int:
    """``deit train``: the preset with flags and overrides, trained (or resumed)."""

    def start(config: TrainConfig) -> dict:
        return deit.train(config, args.out, overwrite=args.overwrite, command=_command())

    return _train_or_resume(args, start)


def run_finetune(args: argparse.Namespace) -> int:
    """``deit finetune``: a training run that starts from given weights at a new size."""
    if not args.resume and (not args.checkpoint or not args.img_size):
        raise ConfigError("deit finetune needs --checkpoint and --img-size (or --resume DIR)")

    def start(recipe: TrainConfig) -> dict:
        return deit.finetune(
            args.checkpoint, args.img_size, args.out, recipe=recipe, patch_size=args.patch_size,
            num_classes=args.num_classes, overwrite=args.overwrite, command=_command(),
        )  # fmt: skip

    return _train_or_resume(args, start)


def run_teacher(args: argparse.Namespace) -> int:
    """``deit teacher``: train (or resume) a teacher run."""
    from deit.teacher_recipe import TeacherConfig

    changes = _given(args, "arch", "epochs", "seed") | parse_overrides(
        TeacherConfig, args.overrides
    )
    if args.resume:
        summary = deit.train_teacher(changes, args.resume, resume=True, command=_command())
    else:
        config = deit.TeacherConfig(**changes)
        summary = deit.train_teacher(config, args.out, command=_command(), overwrite=args.overwrite)
    print(
        f"done: test top-1 {summary['test_top1']:.2f}% ({summary['test_top1_tta']:.2f}% with "
        f"test-time augmentation), {summary['train_seconds'] / 60:.1f} min of training"
    )
    print(f"run directory: {args.resume or args.out}")
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    """``deit reproduce``: the matrix A–E, its tables and plots."""
    results = deit.reproduce(
        args.preset, args.out, data_dir=args.data_dir, download=not args.no_download,
        seeds=args.seeds, train_teacher=args.train_teacher, overrides=tuple(args.overrides),
    )  # fmt: skip
    for row in results["rows"]:
        which = "" if row["run"] == "teacher" else f" ({row['run']}, {row['head']})"
        print(f"{row['method'] + which:<48} {row['top1']:6.2f} %")
    print(f"results: {Path(args.out) / 'results.md'}")
    return 0


def run_attention(args: argparse.Namespace) -> int:
    """``deit attention``: the attention figure of a student checkpoint."""
    from deit.attention import draw_attention

    out = draw_attention(args.checkpoint, args.out, args.images, args.data_dir,
                         download=not args.no_download)  # fmt: skip
    print(f"wrote {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``deit eval``: accuracy of a checkpoint on the test set."""
    result = deit.evaluate(
        args.checkpoint, args.data_dir, tta=args.tta, download=not args.no_download
    )
    if args.json:
        print(json.dumps(result))
        return 0
    heads = "  ".join(f"{k} {v:.2f}%" for k, v in result["heads"].items())
    print(f"{result['checkpoint']} ({result['kind']}): top-1 {result['top1']:.2f}%  {heads}")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """``deit data``: find, describe and (with --check) verify a data set; 2 if a file is bad."""
    report = deit.data.describe(
        args.dataset, args.data_dir, download=not args.no_download, check=args.check
    )
    bad = report.get("bad", [])
    if args.json:
        print(json.dumps(report))
    elif report["dataset"] == "folder":
        train, val = report["train_per_class"], report["val_per_class"]
        print(f"folder {report['root']} (scanned in {report['scan_seconds']:.2f} s)")
        print(f"  {len(report['classes'])} classes, train {report['train']} images, "
              f"val {report['val']}")  # fmt: skip
        print(f"  train images per class: min {min(train)}, max {max(train)}")
        print(f"  val images per class: min {min(val)}, max {max(val)}")
    else:
        seconds, classes = report["load_seconds"], len(report["classes"])
        print(f"{report['dataset']} at {report['root']} (loaded and checked in {seconds:.2f} s)")
        print(f"  train {report['train']} images, test {report['test']}, {classes} classes")
        print(f"  train images per class: min {min(report['train_per_class'])}, "
              f"max {max(report['train_per_class'])}")  # fmt: skip
        print(f"  channel mean {report['mean']}, std {report['std']}")
    if args.check and not args.json:
        for item in bad:
            print(f"bad: {item['path']}: {item['reason']}")
        total = report["train"] + report.get("val", report.get("test", 0))
        print(f"checked {total} images: {len(bad)} bad")
    return EXIT_USAGE if bad else 0


def run_bench(args: argparse.Namespace) -> int:
    """``deit bench``: speed of every model against the matmul ceiling."""
    from deit.bench import STUDENTS, TEACHERS, bench, markdown
    from deit.distributed import pick_device

    quick = {"batch_size": 8, "warmup": 1, "steps": 2, "ceiling_size": 1024} if args.quick else {}
    result = bench(
        tuple(args.models or STUDENTS + TEACHERS), device=pick_device(args.device),
        bf16=args.bf16, **({"batch_size": args.batch_size, "steps": args.steps} | quick),
        progress=lambda line: print(f"timing {line}", file=sys.stderr, flush=True),
    )  # fmt: skip
    print(json.dumps(result["rows"], indent=1) if args.json else markdown(result))
    return 0


COMMANDS = {
    "train": run_train,
    "teacher": run_teacher,
    "finetune": run_finetune,
    "reproduce": run_reproduce,
    "attention": run_attention,
    "eval": run_eval,
    "data": run_data,
    "bench": run_bench,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deit`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    name = f"deit {args.command}"
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except WriteError as err:
        print(f"{name}: error: {err}; the last checkpoint is kept", file=sys.stderr)
        return EXIT_FAILED
    except FloatingPointError as err:
        print(f"{name}: stopped: {err}; the last good checkpoint is kept", file=sys.stderr)
        return EXIT_FAILED
    except RunInterrupted as err:
        if is_main_process():
            print(f"{name}: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
