"""Data-parallel training: the single-process world; torchrun on CPU (gloo) against one process."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from deit.checkpoint import load_checkpoint
from deit.cli import main
from deit.config import ConfigError, TrainConfig, validate
from deit.distributed import is_main_process, pick_device, session


def test_without_torchrun_a_session_is_a_world_of_one(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with session("cpu") as world:
        assert (world.rank, world.world_size, world.is_main, world.distributed) == (
            0, 1, True, False,
        )  # fmt: skip
        assert world.device == torch.device("cpu")
        model = nn.Linear(2, 2)
        assert world.wrap(model) is model
        assert world.sum([1.5, 2.0]) == [1.5, 2.0]
        assert world.any(True) and not world.any(False)
        assert world.gather({"a": 1}) == [{"a": 1}]


GLOO_PEER_GONE = (
    "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
    "[127.0.0.1]:24747. This is typically caused by a remote worker crashing. Check the logs."
)


@pytest.mark.parametrize(
    "error, line",
    [
        (RuntimeError(GLOO_PEER_GONE), "Connection closed by peer [127.0.0.1]:24747"),
        (torch.distributed.DistBackendError("NCCL error: remote process exited. More."),
         "NCCL error: remote process exited"),
    ],
)  # fmt: skip
def test_a_rank_whose_peer_ended_says_so_in_one_line(monkeypatch, capsys, tmp_path, error, line):
    """The rank that failed prints why; the others' collectives fail, each says so in a line."""
    from deit import cli

    def fails(args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "train", fails)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert main(["train", "--preset", "smoke", "--out", "never-made"]) == 1
    assert capsys.readouterr().err == (
        "deit train: error: rank 3 stopped because another rank of the job ended first (its own "
        f"error says why; here: {line}); nothing was written yet (run the command again)\n"
    )
    (tmp_path / "checkpoint.pt").touch()  # a run with a checkpoint, resumed
    assert main(["train", "--resume", str(tmp_path)]) == 1
    assert capsys.readouterr().err.endswith(f"here: {line}); the last checkpoint is kept\n")


@pytest.mark.parametrize("rank, tty, starts_a_line", [("1", True, True), ("0", True, False),
                                                      ("1", False, False)])  # fmt: skip
def test_another_ranks_error_on_a_terminal_ends_rank_zeros_bar_line_first(
    monkeypatch, rank, tty, starts_a_line
):
    """Rank 0's progress bar may be mid-line on the terminal all ranks share; a log file
    (not a terminal) keeps each error to exactly one line."""
    import io

    from deit import cli
    from deit.data import DataError

    class Terminal(io.StringIO):
        def isatty(self):
            return tty

    def fails(args):
        raise DataError("DIR/b.png: cannot decode")

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setitem(cli.COMMANDS, "train", fails)
    monkeypatch.setenv("RANK", rank)
    assert main(["train", "--preset", "smoke", "--out", "never-made"]) == 2
    line = "deit train: error: DIR/b.png: cannot decode\n"
    assert err.getvalue() == ("\n" + line if starts_a_line else line)


def test_rank_zeros_error_handed_to_the_others_is_printed_once(monkeypatch, capsys):
    """A folder's listing error found by rank 0 reaches every rank (``from_main``); only
    rank 0 prints it, every rank exits 2."""
    from deit import cli
    from deit.data import DataError

    for rank, printed in (("0", True), ("1", False)):
        shared = ValueError("train_size 5000 is larger than the training set")
        shared.from_rank_zero = rank != "0"  # as from_main marks it on the other ranks

        def fails(args, err=shared):
            try:
                raise err
            except ValueError:  # as load_inputs turns a loader's check into a DataError
                raise DataError(f"DIR: {err}") from None

        monkeypatch.setitem(cli.COMMANDS, "train", fails)
        monkeypatch.setenv("RANK", rank)
        assert main(["train", "--preset", "smoke", "--out", "never-made"]) == 2
        assert bool(capsys.readouterr().err) is printed


@pytest.mark.parametrize("rank", ["0", "1"])
def test_an_error_in_the_flags_is_printed_by_rank_zero_only(monkeypatch, capsys, rank, tmp_path):
    """Every rank parses the same command line: a bad flag or --set value is one line under
    torchrun, not one per rank; every rank exits 2. An error that may differ between ranks
    (what a rank finds on its disk) is printed by the rank that finds it."""
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--out", "never-made", "--no-such-flag"])
    assert stopped.value.code == 2
    assert ("unrecognized arguments: --no-such-flag" in capsys.readouterr().err) is (rank == "0")
    for flags in (["train", "--preset", "smoke", "--set", "nope=1", "--out", "never-made"],
                  ["train", "--resume", str(tmp_path), "--set", "nope=1"],
                  ["finetune", "--out", "never-made"]):  # fmt: skip
        assert main(flags) == 2
        assert bool(capsys.readouterr().err) is (rank == "0"), flags
    assert main(["train", "--resume", str(tmp_path)]) == 2  # each rank reads the directory
    assert "holds no run to resume" in capsys.readouterr().err


@pytest.mark.parametrize("rank", ["0", "1"])
def test_commands_that_run_in_one_process_refuse_torchrun(monkeypatch, capsys, rank, tmp_path):
    """Under torchrun every rank would train the same teacher into the same directory (or
    evaluate, export, reproduce the same thing): one line from rank 0, exit 2, nothing made."""
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "teacher"
    assert main(["teacher", "--out", str(out)]) == 2
    assert not out.exists()
    expected = (
        "deit teacher: error: deit teacher runs in one process; of deit's commands only "
        "train and finetune run under torchrun (data-parallel). Run it without torchrun\n"
    )
    assert capsys.readouterr().err == (expected if rank == "0" else "")
    assert main(["eval", "--checkpoint", "cifar10-teacher"]) == 2


def test_other_runtime_errors_keep_their_traceback(monkeypatch):
    """A bug is not a lost rank: outside torchrun, or with another message, it propagates."""
    from deit import cli

    def fails(args):
        raise RuntimeError("shape mismatch")

    monkeypatch.setitem(cli.COMMANDS, "train", fails)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["train", "--preset", "smoke", "--out", "never-made"])
    monkeypatch.setitem(cli.COMMANDS, "train", lambda args: (_ for _ in ()).throw(
        RuntimeError(GLOO_PEER_GONE)))  # fmt: skip
    monkeypatch.delenv("RANK")
    with pytest.raises(RuntimeError, match="closed by peer"):
        main(["train", "--preset", "smoke", "--out", "never-made"])


def _from_main_in_two_ranks(rank: int, port: int, results) -> None:
    """One of two forked gloo ranks: what ``World.from_main`` gives it, or the error it raises."""
    import torch.distributed as dist

    from deit.data import DataError
    from deit.distributed import World, repeats_rank_zero

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)  # fmt: skip
    world = World(rank, 2)
    try:
        listing = world.from_main(lambda: [f"listed by rank {rank}"])

        def missing():
            raise DataError(f"DIR does not exist (rank {rank} looked)")

        try:
            world.from_main(missing)
            error = None
        except DataError as err:
            error = str(err)
            assert repeats_rank_zero(err) is (rank != 0)  # only rank 0 prints it

        def unpicklable():
            raise ValueError(lambda: rank)  # a lambda cannot cross to the other rank

        try:
            world.from_main(unpicklable)
        except RuntimeError as err:  # every rank gets its text instead
            odd = str(err).split(" at ")[0]
        results.put((rank, listing, error, odd))
    finally:
        dist.destroy_process_group()


def test_from_main_gives_every_rank_rank_zeros_result_or_its_error():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("fork")
    results = context.Queue()
    procs = [context.Process(target=_from_main_in_two_ranks, args=(r, port, results))
             for r in (0, 1)]  # fmt: skip
    for proc in procs:
        proc.start()
    got = sorted(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    error = "DIR does not exist (rank 0 looked)"
    odd = "ValueError: <function _from_main_in_two_ranks"
    assert [g[:3] for g in got] == [(r, ["listed by rank 0"], error) for r in (0, 1)]
    assert all(g[3].startswith(odd) for g in got), got


_RANK_LEAVING = """
import os, sys, torch
from deit.distributed import session
def threads():
    return len(os.listdir("/proc/self/task"))
torch.nn.Linear(4, 2)(torch.randn(3, 4)).sum().backward()  # the CPU's own threads first
before = threads()
with session("cpu") as world:
    model = world.wrap(torch.nn.Linear(4, 2))
    model(torch.randn(3, 4)).sum().backward()
    world.gather(world.rank)
    del model
print(before, threads())
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_a_rank_leaves_no_gloo_thread_behind():
    """After ``session`` the group is gone with its threads, before the interpreter's teardown,
    where a gloo thread that releases a collective's tensors aborts the process (it did)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
    ranks = [subprocess.Popen([sys.executable, "-c", _RANK_LEAVING], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in (0, 1)]  # fmt: skip
    for rank in ranks:
        out, err = rank.communicate(timeout=120)
        assert rank.returncode == 0, err
        before, after = map(int, out.split())
        assert after == before, f"{after - before} threads left (gloo's: loop and workers)"


def test_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no GPU"):
        pick_device("cuda")
    assert pick_device("auto") == torch.device("cpu")


def test_only_rank_zero_is_the_main_process(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_device_and_flip_are_checked():
    with pytest.raises(ConfigError, match="device"):
        validate(TrainConfig(device="tpu"))
    with pytest.raises(ConfigError, match="hflip"):
        validate(TrainConfig(hflip=1.5))


def test_the_learning_rate_follows_the_global_batch():
    config = TrainConfig(lr=5e-4, batch_size=128)
    assert config.peak_lr(world_size=4) == pytest.approx(5e-4)
    assert config.peak_lr(world_size=1) == config.scaled_lr


def _start_torchrun(args: list[str], cwd) -> subprocess.Popen:
    """Start ``deit train`` under torchrun with two ranks (one thread each)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", "-m", "deit"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*launcher, "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)  # fmt: skip


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for a started ``deit train``; its exit code and output, as ``subprocess.run``'s."""
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def side_by_side(cifar_dir, cifar10, small_teacher, tmp_path_factory):
    """Per source, once: ``deit train`` as one process × batch 64 and as 2 gloo ranks × 32.

    k = 8 steps of hard distillation (by the small teacher). Augmentation draws
    nothing that changes the images on the device (no padding, no flip), so both
    sides see the same global batches. From an image folder the per-image
    random-resized crops are drawn from (seed, epoch, position in the global
    order), so they are the same too. Returns a function of the source giving
    the directory that holds the runs ``one`` and ``two``, the one process's exit
    code and the two ranks' finished torchrun.
    """
    done = {}

    def run(source: str):
        if source in done:
            return done[source]
        tmp_path = tmp_path_factory.mktemp(f"gloo-{source}")
        data = ["--data-dir", str(cifar_dir), "--no-download"]
        if source == "folder":
            from deit.data.export import export_cifar

            root = export_cifar(cifar10, tmp_path / "png", train_size=512, val_size=256)
            data = ["--data-dir", str(root), "--set", "dataset=folder", "--set", "workers=0",
                    "--set", "normalization=cifar10"]  # fmt: skip
        common = ["--preset", "smoke", "--distillation", "hard", "--teacher", str(small_teacher),
                  "--epochs", "1", *data]  # fmt: skip
        for key_value in ("train_size=512", "test_size=256", "crop_padding=0", "hflip=0",
                          "threads=1"):  # fmt: skip
            common += ["--set", key_value]
        # Side by side (one thread each): the single process, here in the test's own process
        # (no third start of torch), trains while the two ranks do.
        two = _start_torchrun([*common, "--out", "two", "--set", "batch_size=32"], tmp_path)
        one = main(["train", *common, "--out", str(tmp_path / "one"), "--set", "batch_size=64"])
        done[source] = tmp_path, one, _finish(two)
        return done[source]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("source", ["cifar", "folder"])
def test_two_gloo_processes_match_one_process_with_the_global_batch(source, side_by_side):
    """Only the order of floating-point sums differs (DDP averages the gradient over ranks).

    Tolerance: every weight within 1e-4 after 8 AdamW steps (see ``side_by_side``).
    """
    tmp_path, one, two = side_by_side(source)
    assert one == 0
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run directory: two") == 1  # printed by rank 0 only

    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "checkpoint.pt", "config.json", "metrics.jsonl", "summary.json",
    ]  # fmt: skip
    first, second = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("one", "two"))
    assert first["step"] == second["step"] == 8
    assert len(second["ranks"]) == 2
    for name, weight in first["model"].items():
        torch.testing.assert_close(second["model"][name], weight, atol=1e-4, rtol=0, msg=name)
    for d in ("one", "two"):  # the share of the epoch its slowest-fed rank waited for batches
        assert 0 <= json.loads((tmp_path / d / "metrics.jsonl").read_text())["data_wait"] < 1
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two")]
    assert summaries[1]["hardware"]["processes"] == 2
    assert summaries[0]["teacher_top1"] == pytest.approx(summaries[1]["teacher_top1"])
    for head, top1 in summaries[0]["test_top1"].items():
        assert summaries[1]["test_top1"][head] == pytest.approx(top1, abs=1.0)


@pytest.mark.slow
def test_a_distributed_checkpoint_resumes_only_with_as_many_processes(
    side_by_side, tmp_path, capsys
):
    import shutil

    runs, _, two = side_by_side("cifar")
    assert two.returncode == 0, two.stderr
    shutil.copytree(runs / "two", tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    (tmp_path / "run" / "summary.json").unlink()
    state["step"] = 0
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    assert "written by 2 process(es)" in capsys.readouterr().err
