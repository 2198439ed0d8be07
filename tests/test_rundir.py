"""The run engine's rules: never overwrite a run, resume only a run, fail writes in one line."""

import dataclasses
import errno
import json
import os
import subprocess

import pytest
import torch
from stop_and_resume import DeitProcess

from deit import checkpoint, inputs, rundir, trainer
from deit.checkpoint import WriteError, save_checkpoint, write_atomic
from deit.cli import main
from deit.config import ConfigError, TrainConfig, config_from_dict, from_preset
from deit.rundir import RunDir, open_run
from deit.teacher_recipe import TeacherConfig
from deit.teacher_training import train_teacher

FREE = ("data_dir", "download", "threads")


def open_new(out, config=None, **kwargs):
    return open_run(out, config or TrainConfig(), resume=False, load_config=config_from_dict,
                    free=FREE, command="deit train", **kwargs)  # fmt: skip


def a_run(path, config=None):
    """A run directory with a config and one checkpoint, as a run leaves it after an epoch."""
    run, config = open_new(path, config)
    run.create(config)
    run.save_checkpoint({"step": 1, "weights": torch.arange(4.0)})
    run.append_metrics({"epoch": 1})
    return run


def leftovers(path):
    return sorted(p.name for p in path.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- overwriting


def test_a_directory_holding_a_run_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    a_run(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    monkeypatch.setattr(inputs, "load_cifar", lambda *a, **k: pytest.fail("loaded data"))
    code = main(["train", "--preset", "smoke", "--set", "lr=0.1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"already holds a run; continue it with `deit train --resume {tmp_path / 'run'}`" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_teacher_runs_are_refused_the_same_way(tmp_path):
    a_run(tmp_path / "run", TeacherConfig())
    with pytest.raises(ConfigError, match="deit teacher --resume"):
        train_teacher(TeacherConfig(), tmp_path / "run")


def test_overwrite_deletes_the_old_runs_files_only_when_asked(tmp_path):
    a_run(tmp_path / "run")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    run, config = open_new(tmp_path / "run", overwrite=True)
    run.create(dataclasses.replace(config, lr=0.1))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.1
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == ""
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_an_empty_or_unrelated_directory_is_fine(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "readme.txt").write_text("x")
    run, _ = open_new(tmp_path / "run")
    assert run.path == tmp_path / "run"


# ----------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("target", ["missing", "empty", "file"])
def test_resume_of_a_directory_without_a_run_says_so_in_one_line(tmp_path, capsys, target):
    path = tmp_path / "run"
    if target == "empty":
        path.mkdir()
    elif target == "file":
        path.write_text("x")
    for command in ("train", "teacher", "finetune"):
        assert main([command, "--resume", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"deit {command}: error: {path} holds no run to resume (no config.json there)"


def test_resume_refuses_changes_that_alter_the_run_and_names_them(tmp_path, capsys):
    a_run(tmp_path / "run", from_preset("smoke"))
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "lr=0.5", "--epochs", "9"])
    err = capsys.readouterr().err
    assert "cannot change" in err and "lr (" in err and "epochs (3 → 9)" in err


def test_resume_takes_the_saved_config_with_only_free_fields_changed(tmp_path):
    a_run(tmp_path / "run", from_preset("smoke"))
    changes = {"data_dir": "/elsewhere", "threads": 1, "epochs": 3}  # epochs as saved: fine
    _, config = open_run(tmp_path / "run", changes, resume=True, load_config=config_from_dict,
                         free=FREE, command="deit train")  # fmt: skip
    assert config == dataclasses.replace(from_preset("smoke"), data_dir="/elsewhere", threads=1)


def test_metrics_are_trimmed_to_the_checkpoint_on_resume(tmp_path):
    run = a_run(tmp_path / "run")
    run.append_metrics({"epoch": 2})  # written, then the process died before its checkpoint
    assert run.keep_metrics(1) == {"epoch": 1}
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"epoch": 1}\n'


def test_a_finished_run_resumes_to_its_summary(tmp_path, monkeypatch):
    a_run(tmp_path / "run", from_preset("smoke"))
    (tmp_path / "run" / "summary.json").write_text('{"test_top1": {"cls": 50.0}}')
    monkeypatch.setattr(inputs, "load_cifar", lambda *a, **k: pytest.fail("trained again"))
    assert trainer.train(None, tmp_path / "run", resume=True) == {"test_top1": {"cls": 50.0}}


def open_auto(out, config, derived=()):
    return open_run(out, config, resume="auto", load_config=config_from_dict, free=FREE,
                    command="deit train", derived=derived)  # fmt: skip


def test_auto_resume_starts_a_run_or_continues_the_same_one(tmp_path):
    """resume="auto": the same command run again (a requeued job, a relaunched torchrun job)."""
    smoke = from_preset("smoke")
    run, config = open_auto(tmp_path / "run", smoke)
    assert not run.resumed and config == smoke  # nothing there: a new run
    a_run(tmp_path / "run", dataclasses.replace(smoke, epochs=7))  # settled from a budget
    moved = dataclasses.replace(smoke, data_dir="/elsewhere")
    with pytest.raises(ConfigError, match=r"--auto-resume continues .* cannot change epochs"):
        open_auto(tmp_path / "run", moved)
    run, config = open_auto(tmp_path / "run", moved, derived=("epochs",))
    assert run.resumed and config == dataclasses.replace(smoke, epochs=7, data_dir="/elsewhere")
    with pytest.raises(ConfigError, match=r"cannot change seed \(0 → 5\)"):
        open_auto(tmp_path / "run", dataclasses.replace(smoke, seed=5), derived=("epochs",))


def test_auto_resume_of_a_finished_run_settled_from_a_budget_is_its_summary(tmp_path, monkeypatch):
    """The trainer names what it settles itself (epochs from budget_images, the subset's
    fingerprint): the command's own config, unsettled, finds its run."""
    given = dataclasses.replace(from_preset("smoke"), epochs=3, budget_images=20_000)
    saved = dataclasses.replace(given, epochs=4, warmup_epochs=1.3, subset_sha256="ab12")
    a_run(tmp_path / "run", saved)
    (tmp_path / "run" / "summary.json").write_text('{"test_top1": {"cls": 50.0}}')
    monkeypatch.setattr(inputs, "load_cifar", lambda *a, **k: pytest.fail("trained again"))
    assert trainer.train(given, tmp_path / "run", resume="auto") == {"test_top1": {"cls": 50.0}}
    with pytest.raises(ConfigError, match="cannot change subset_sha256"):  # named: checked
        trainer.train(dataclasses.replace(given, subset_sha256="cd34"), tmp_path / "run",
                      resume="auto")  # fmt: skip


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_auto_resume_goes_with_out_alone(tmp_path, capsys, flag):
    target = ["--out", str(tmp_path / "run")] if flag == "--overwrite" else []
    code = main(["train", *target, flag, *([str(tmp_path)] if flag == "--resume" else []),
                 "--auto-resume"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--auto-resume" in err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- failed writes


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_no_temp_file(tmp_path, monkeypatch):
    run = a_run(tmp_path / "run")
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    with pytest.raises(WriteError) as caught:
        run.save_checkpoint({"step": 2, "weights": torch.zeros(4)})
    assert str(caught.value) == (
        f"cannot write {tmp_path / 'run' / 'checkpoint.pt'}: No space left on device"
    )
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert leftovers(tmp_path / "run") == []
    assert caught.value.run_path == tmp_path / "run"  # for the error line's last words


def test_the_error_line_says_a_checkpoint_is_kept_only_where_there_is_one(
    tmp_path, monkeypatch, capsys
):
    from deit import cli

    started, trained = open_new(tmp_path / "started")[0], a_run(tmp_path / "trained")
    started.create(TrainConfig())
    empty = open_new(tmp_path / "empty")[0]  # its config.json could not be written
    (tmp_path / "empty").mkdir()
    for run, left in [(started, "no checkpoint was written yet (--resume starts the run over)"),
                      (empty, "nothing was written yet (run the command again)"),
                      (trained, "the last checkpoint is kept")]:  # fmt: skip
        failed = WriteError(f"cannot write {run.file('checkpoint.pt')}: No space left on device")
        failed.run_path = run.path
        monkeypatch.setitem(cli.COMMANDS, "train", lambda args, e=failed: (_ for _ in ()).throw(e))
        assert main(["train", "--out", str(run.path)]) == 1
        assert capsys.readouterr().err == f"deit train: error: {failed}; {left}\n"
        assert rundir.what_is_left(run.path) == left


def test_a_vanished_run_directory_is_named(tmp_path):
    run = a_run(tmp_path / "run")
    for p in (tmp_path / "run").iterdir():
        p.unlink()
    (tmp_path / "run").rmdir()
    with pytest.raises(WriteError, match=r"checkpoint\.pt: No such file or directory"):
        run.save_checkpoint({"step": 2})


def test_a_failed_metrics_line_is_a_write_error(tmp_path, monkeypatch):
    run = a_run(tmp_path / "run")
    monkeypatch.setattr(rundir.Path, "open", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))  # fmt: skip
    with pytest.raises(WriteError, match=r"metrics\.jsonl: Permission denied"):
        run.append_metrics({"epoch": 2})


def test_atomic_writes_keep_the_users_file_mode(tmp_path):
    write_atomic(tmp_path / "a.json", b"{}")
    save_checkpoint({"x": 1}, tmp_path / "c.pt")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.json", "c.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def _tmpfs(path):
    """Mount a 300 KB tmpfs at ``path`` if this machine lets us (root in a sandbox)."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


def test_a_non_finite_loss_says_what_the_run_directory_holds(tmp_path, monkeypatch, capsys):
    from deit import cli

    def diverges(args):
        raise FloatingPointError("non-finite loss nan at step 3")

    monkeypatch.setitem(cli.COMMANDS, "train", diverges)
    a_run(tmp_path / "trained")
    new, trained = ["--out", str(tmp_path / "new")], ["--resume", str(tmp_path / "trained")]
    for args, left in [(new, "nothing was written yet (run the command again)"),
                       (trained, "the last checkpoint is kept")]:  # fmt: skip
        assert main(["train", *args]) == 1
        assert capsys.readouterr().err == (
            f"deit train: stopped: non-finite loss nan at step 3; {left}\n"
        )


@pytest.mark.slow
def test_training_into_a_full_disk_stops_with_one_line(tmp_path, cifar_dir):
    disk = tmp_path / "disk"
    if not _tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here; the injected-error tests above cover the logic")
    try:
        out = disk / "run"
        done = DeitProcess(["train", "--preset", "smoke", "--epochs", "2", "--set",
                            "train_size=128", "--set", "test_size=64", "--data-dir",
                            str(cifar_dir), "--out", str(out)])  # fmt: skip
        _, stderr = done.communicate(timeout=300)
        last = stderr.strip().splitlines()[-1].split("\r")[-1].strip()
        assert done.returncode == 1, stderr
        assert last == (  # the first checkpoint does not fit: none is left, and it says so
            f"deit train: error: cannot write {out / 'checkpoint.pt'}: No space left on device; "
            "no checkpoint was written yet (--resume starts the run over)"
        )
        assert leftovers(out) == [] and "Traceback" not in stderr
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_run_dir_reports_its_resume_command(tmp_path):
    assert RunDir(tmp_path, "deit teacher").resume_with == f"deit teacher --resume {tmp_path}"
