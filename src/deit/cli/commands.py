"""The ``deit`` subcommands: each reads its parsed flags, calls one API function, prints."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from pathlib import Path

import deit
from deit.config import ConfigError, TrainConfig, build_config
from deit.distributed import is_main_process, said_by_rank_zero
from deit.overrides import parse_overrides

EXIT_BAD_FILES = 2  # deit data --check found files that do not decode


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
        images = f" ({summary['test_images']:,} images)" if summary.get("test_images") else ""
        print(
            f"done in {summary['wall_seconds']:.0f} s: {summary['evaluated_on']} top-1"
            f"{images} {heads}"
        )
        print(f"run directory: {out}")
    return 0


@contextlib.contextmanager
def _flags_checked():
    """Where an error can come from the flags alone: every torchrun rank parses the same
    command line and finds the same error, so only rank 0 prints it (eight GPUs, one line)."""
    try:
        yield
    except ConfigError as err:
        said_by_rank_zero(err)
        raise


def _check_auto_resume(args: argparse.Namespace) -> None:
    """--auto-resume names no directory: it goes with --out, and not with --overwrite."""
    with _flags_checked():
        if args.auto_resume and args.resume:
            raise ConfigError("--auto-resume goes with --out DIR (it resumes the run there if "
                              "there is one); --resume DIR resumes DIR already")  # fmt: skip
        if args.auto_resume and args.overwrite:
            raise ConfigError("--auto-resume continues the run in --out and --overwrite "
                              "replaces it: give one of them")  # fmt: skip


def _auto(args: argparse.Namespace) -> bool | str:
    """The ``resume`` argument of a run started with --out: "auto" with --auto-resume."""
    return "auto" if args.auto_resume else False


def _train_or_resume(args: argparse.Namespace, start) -> int:
    """``--resume DIR`` continues a student run; else ``start(config)`` begins one in --out."""
    given = _given(args, "student", "distillation", "teacher", "epochs", "seed")
    _check_auto_resume(args)
    if args.resume:
        with _flags_checked():
            changes = given | parse_overrides(TrainConfig, args.overrides)
        summary = deit.train(changes, args.resume, resume=True, command=_command())
        return _print_run(summary, args.resume)
    with _flags_checked():
        config = build_config(args.preset, given, args.overrides)
    return _print_run(start(config), args.out)


def run_train(args: argparse.Namespace) -> int:
    """``deit train``: the preset with flags and overrides, trained (or resumed)."""

    def start(config: TrainConfig) -> dict:
        return deit.train(config, args.out, resume=_auto(args), overwrite=args.overwrite,
                          command=_command())  # fmt: skip

    return _train_or_resume(args, start)


def run_finetune(args: argparse.Namespace) -> int:
    """``deit finetune``: a training run that starts from given weights at a new size."""
    if not args.resume and (not args.checkpoint or not args.img_size):
        with _flags_checked():
            raise ConfigError("deit finetune needs --checkpoint and --img-size (or --resume DIR)")

    def start(recipe: TrainConfig) -> dict:
        return deit.finetune(
            args.checkpoint, args.img_size, args.out, recipe=recipe, patch_size=args.patch_size,
            num_classes=args.num_classes, overwrite=args.overwrite, resume=_auto(args),
            command=_command(),
        )  # fmt: skip

    return _train_or_resume(args, start)


def run_teacher(args: argparse.Namespace) -> int:
    """``deit teacher``: train (or resume) a teacher run."""
    from deit.teacher_recipe import TeacherConfig

    changes = _given(args, "arch", "epochs", "seed") | parse_overrides(
        TeacherConfig, args.overrides
    )
    _check_auto_resume(args)
    if args.resume:
        summary = deit.train_teacher(changes, args.resume, resume=True, command=_command())
    else:
        config = deit.TeacherConfig(**changes)
        summary = deit.train_teacher(config, args.out, resume=_auto(args), command=_command(),
                                     overwrite=args.overwrite)  # fmt: skip
    print(
        f"done: {summary['evaluated_on']} top-1 ({summary['test_images']:,} images) "
        f"{summary['test_top1']:.2f}% ({summary['test_top1_tta']:.2f}% with test-time "
        f"augmentation), {summary['train_seconds'] / 60:.1f} min of training"
    )
    print(f"run directory: {args.resume or args.out}")
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    """``deit reproduce``: the matrix A–E (or the ``--runs`` subset), its tables and plots;
    with ``--train-sizes``, the runs at each training-set size (:func:`deit.data_curve`)."""
    common = {"data_dir": args.data_dir, "download": not args.no_download, "seeds": args.seeds,
              "train_teacher": args.train_teacher, "overrides": tuple(args.overrides)}  # fmt: skip
    if args.train_sizes:
        curve = deit.data_curve(args.preset, args.out, args.train_sizes, runs=args.runs or "AE",
                                **common)  # fmt: skip
        for point in curve["points"]:
            gap = point.get("e_minus_a")
            cells = "  ".join(f"{name} {run['heads'][run['default_head']]['mean']:.2f}%"
                              for name, run in point["runs"].items())  # fmt: skip
            note = f"  E-A {gap['mean']:+.2f}" if gap else ""
            print(f"N={point['size']:<6} {cells}{note}")
        print(f"results: {Path(args.out) / 'results.md'}")
        return 0
    results = deit.reproduce(args.preset, args.out, runs=args.runs or "ABCDE", **common)
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
    print(
        f"{result['checkpoint']} ({result['kind']}): top-1 {result['top1']:.2f}% on "
        f"{result['images']:,} test images  {heads}".rstrip()
    )
    return 0


def _prediction_sink(args: argparse.Namespace, stack: contextlib.ExitStack):
    """What ``deit predict`` does with each record: a JSON line, a text line or a CSV row.

    The CSV file is opened at the first record, after every check passed.
    """
    writer = None

    def sink(record: dict) -> None:
        nonlocal writer
        if args.json:
            print(json.dumps(record))
            return
        if "error" in record:  # listed on stderr at the end
            return
        pairs = list(zip(record["classes"], record["probs"], strict=True))
        if not args.csv:
            print(f"{record['path']}: " + ", ".join(f"{c} ({p:.3f})" for c, p in pairs))
            return
        if writer is None:
            out = stack.enter_context(open(args.csv, "w", newline=""))  # noqa: SIM115
            writer = csv.writer(out)
            columns = (f"{c}_{k}" for k in range(1, len(pairs) + 1) for c in ("class", "prob"))
            writer.writerow(["path", *columns])
        writer.writerow([record["path"], *(x for c, p in pairs for x in (c, f"{p:.6f}"))])

    return sink


def run_predict(args: argparse.Namespace) -> int:
    """``deit predict``: the top-k classes of image files and folders (text, JSON Lines, CSV)."""
    if args.csv and Path(args.csv).exists() and not args.overwrite:
        raise ConfigError(f"{args.csv} exists; pass --overwrite to replace it")
    with contextlib.ExitStack() as stack:
        result = deit.predict(
            args.checkpoint, args.paths, topk=args.topk, head=args.head,
            batch_size=args.batch_size, workers=args.workers, skip_bad=args.skip_bad,
            download=not args.no_download, sink=_prediction_sink(args, stack),
        )  # fmt: skip
    for record in result["skipped"]:
        print(f"skipped: {record['error']}", file=sys.stderr)
    print(f"{result['images']} images in {result['seconds']:.1f} s "
          f"({result['images_per_second']:.0f} img/s), {len(result['skipped'])} skipped"
          + (f"; wrote {args.csv}" if args.csv else ""), file=sys.stderr)  # fmt: skip
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``deit export``: the student as ONNX or for timm, with the measured parity."""
    report = deit.export_model(args.checkpoint, args.format, args.out, head=args.head,
                               overwrite=args.overwrite, download=not args.no_download)  # fmt: skip
    if args.json:
        print(json.dumps(report))
        return 0
    diffs = ", ".join(f"batch {b}: {d:.2e}" for b, d in report["max_abs_diff"].items())
    print(f"wrote {report['out']}; largest difference from PyTorch {diffs} "
          f"(allowed {report['tolerance']:g})")  # fmt: skip
    if args.format == "timm":
        kwargs = "".join(f", {k}={v!r}" for k, v in report["timm_kwargs"].items())
        print(f"load it: model = timm.create_model({report['timm_name']!r}{kwargs}); "
              f"model.load_state_dict(safetensors.torch.load_file({report['out']!r}))")  # fmt: skip
    return 0


def run_data(args: argparse.Namespace) -> int:
    """``deit data``: find, describe and (with --check) verify a data set; 2 if a file is bad."""
    report = deit.data.describe(
        args.dataset, args.data_dir, download=not args.no_download, check=args.check,
        val_shards=args.val_shards or "", shard_info=args.shard_info or "",
    )  # fmt: skip
    bad = report.get("bad", [])
    if args.json:
        print(json.dumps(report))
    elif report["dataset"] in ("folder", "shards"):
        train, val = report["train_per_class"], report["val_per_class"]
        print(f"{report['dataset']} {report['root']} (scanned in {report['scan_seconds']:.2f} s)")
        shards = (f" in {report['train_shards']} and {report['val_shards']} shards"
                  if report["dataset"] == "shards" else "")  # fmt: skip
        print(f"  {len(report['classes'])} classes, train {report['train']} images, "
              f"val {report['val']}{shards}")  # fmt: skip
        for split, counts in (("train", train), ("val", val)):
            if counts:  # an info file without counts per class gives none
                print(f"  {split} images per class: min {min(counts)}, max {max(counts)}")
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
    return EXIT_BAD_FILES if bad else 0


def run_bench(args: argparse.Namespace) -> int:
    """``deit bench``: speed of every model against the matmul ceiling."""
    from deit.bench import STUDENTS, TEACHERS, bench, markdown
    from deit.distributed import pick_device

    quick = {"batch_size": 8, "warmup": 1, "steps": 2, "ceiling_size": 1024} if args.quick else {}
    result = bench(
        tuple(args.models or STUDENTS + TEACHERS), device=pick_device(args.device),
        bf16=args.bf16, cpu_linear=args.cpu_linear,
        **({"batch_size": args.batch_size, "steps": args.steps} | quick),
        progress=lambda line: print(f"timing {line}", file=sys.stderr, flush=True),
    )  # fmt: skip
    print(json.dumps(result["rows"], indent=1) if args.json else markdown(result))
    return 0
