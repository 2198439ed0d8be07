"""The ``deit`` command line: parsing (:mod:`.parser`) and one library call per subcommand
(:mod:`.commands`); here only the dispatch and how each kind of failure ends the process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deit.checkpoint import CheckpointError, WriteError
from deit.cli.commands import (
    run_attention,
    run_bench,
    run_data,
    run_eval,
    run_export,
    run_finetune,
    run_predict,
    run_reproduce,
    run_teacher,
    run_train,
)
from deit.cli.parser import build_parser
from deit.config import ConfigError
from deit.data import DataError
from deit.data.workers import worker_death
from deit.distributed import (
    is_main_process,
    launched_by_torchrun,
    lost_a_rank,
    peer_error,
    repeats_rank_zero,
    said_by_rank_zero,
)
from deit.export import ExportFailed
from deit.inference import BadImage
from deit.rundir import RunFailed, RunInterrupted, what_is_left

EXIT_USAGE = 2  # bad input, refused before any work
EXIT_FAILED = 1  # the run failed (a write, a file, a non-finite loss); its checkpoint is kept

RUN_COMMANDS = ("train", "teacher", "finetune")  # one run directory: --out or --resume
RANKED_COMMANDS = ("train", "finetune")  # those that run data-parallel under torchrun
COMMANDS = {
    "train": run_train,
    "teacher": run_teacher,
    "finetune": run_finetune,
    "reproduce": run_reproduce,
    "attention": run_attention,
    "eval": run_eval,
    "predict": run_predict,
    "export": run_export,
    "data": run_data,
    "bench": run_bench,
}


def _say(line: str) -> None:
    """Print an error line to stderr, on a line of its own.

    Under torchrun every rank writes to one terminal, where rank 0 may be
    drawing its progress bar: another rank's line first ends the bar's line.
    """
    if not is_main_process() and sys.stderr.isatty():
        line = "\n" + line
    print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deit`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    name = f"deit {args.command}"
    run = args.resume or args.out if args.command in RUN_COMMANDS else None
    run_dir = Path(run) if run else None  # what a failed run leaves there: what_is_left
    try:
        if launched_by_torchrun() and args.command not in RANKED_COMMANDS:
            # Every rank would run the whole command, into the same files.
            raise said_by_rank_zero(ConfigError(
                f"{name} runs in one process; of deit's commands only train and finetune run "
                "under torchrun (data-parallel). Run it without torchrun"))  # fmt: skip
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as err:
        if not repeats_rank_zero(err):
            _say(f"{name}: error: {err}")
        return EXIT_USAGE
    except (BadImage, ExportFailed) as err:
        _say(f"{name}: error: {err}")
        return EXIT_FAILED
    except (WriteError, RunFailed) as err:
        _say(f"{name}: error: {err}; {what_is_left(err.run_path or run_dir)}")
        return EXIT_FAILED
    except FloatingPointError as err:
        _say(f"{name}: stopped: {err}; {what_is_left(run_dir)}")  # the last, a good one
        return EXIT_FAILED
    except RunInterrupted as err:
        if is_main_process():
            _say(f"{name}: {err}")
        return 130
    except RuntimeError as err:
        if lost_a_rank(err):
            _say(f"{name}: error: rank {os.environ['RANK']} stopped because another rank of the "
                 f"job ended first (its own error says why; here: {peer_error(err)}); "
                 f"{what_is_left(run_dir)}")  # fmt: skip
        elif death := worker_death(err):  # outside training (which says how to resume)
            _say(f"{name}: error: {death}; if memory ran out, run it with fewer worker "
                 "processes")  # fmt: skip
        else:
            raise
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of stdout stopped (`deit predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say(f"{name}: interrupted")
        return 130
