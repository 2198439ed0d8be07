"""Class-balanced training subsets, the budget in images seen, and the curve over sizes."""

import dataclasses
import json

import pytest
import torch

from deit.budget import stretch_schedule, teacher_schedule, with_budget
from deit.cli import main
from deit.config import ConfigError, build_config, from_preset
from deit.data.subsets import balanced_subset, check_size, fingerprint, validation_part
from deit.inputs import cifar_splits

TINY = ["--student", "deit_nano_patch4_32", "--set", "batch_size=10", "--set", "test_size=50",
        "--set", "threads=1"]  # fmt: skip


def test_a_subset_holds_n_over_classes_of_each_class_and_spreads_the_remainder():
    labels = torch.arange(10).repeat(100)  # 100 of each of 10 classes
    counts = torch.bincount(labels[balanced_subset(labels, 200, 10)], minlength=10)
    assert counts.tolist() == [20] * 10
    counts = torch.bincount(labels[balanced_subset(labels, 203, 10)], minlength=10)
    assert sorted(counts.tolist()) == [20] * 7 + [21] * 3


def test_a_small_class_gives_all_it_has_and_the_others_make_up_the_rest():
    labels = torch.tensor([0] * 5 + [1] * 50 + [2] * 50)
    counts = torch.bincount(labels[balanced_subset(labels, 60, 3)], minlength=3).tolist()
    assert counts[0] == 5 and sum(counts) == 60 and abs(counts[1] - counts[2]) <= 1


def test_the_subset_depends_on_its_seed_only_and_is_nested_across_sizes():
    labels = torch.arange(10).repeat(100)
    a, b = balanced_subset(labels, 100, 10, seed=0), balanced_subset(labels, 100, 10, seed=0)
    assert torch.equal(a, b) and fingerprint(a) == fingerprint(b)
    other = balanced_subset(labels, 100, 10, seed=1)
    assert not torch.equal(a, other) and fingerprint(a) != fingerprint(other)
    assert set(a.tolist()) <= set(balanced_subset(labels, 500, 10, seed=0).tolist())
    assert torch.equal(a, a.sort().values)  # the training set's order is kept


def test_impossible_subsets_are_refused_in_one_line():
    labels = torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match="larger than the training set"):
        balanced_subset(labels, 6, 3)
    with pytest.raises(ValueError, match="smaller than the 3 classes"):
        check_size(2, 5, 3)
    with pytest.raises(ValueError, match="bird has no training images"):
        balanced_subset(torch.tensor([0, 0, 1, 1]), 3, 3, classes=("cat", "dog", "bird"))


def test_validation_holds_a_balanced_tenth_out_of_the_subset():
    labels = torch.arange(10).repeat(30)
    rest, held = validation_part(labels, 10)
    assert torch.bincount(labels[held]).tolist() == [3] * 10
    assert len(rest) == 270 and not set(rest.tolist()) & set(held.tolist())


def test_cifar_subsets_ignore_the_training_seed_and_validation_stays_inside(cifar_dir):
    config = from_preset("smoke", data_dir=str(cifar_dir), train_size=1000, test_size=0)
    data, kept = cifar_splits(config)
    assert torch.bincount(data.train_labels).tolist() == [100] * 10
    _, same = cifar_splits(dataclasses.replace(config, seed=7))
    assert torch.equal(kept, same)
    tuned, inside = cifar_splits(dataclasses.replace(config, validation=True))
    assert len(tuned.test_labels) == 100 and len(tuned.train_labels) == 900
    assert set(inside.tolist()) < set(kept.tolist())


def test_the_budget_sets_epochs_and_stretches_what_counts_in_epochs():
    config = from_preset("cpu-proxy", budget_images=750_000)  # 15 epochs of 50,000
    assert with_budget(config, 50_000) == config  # the preset's meaning at full size
    small = with_budget(config, 5_000)
    assert (small.epochs, small.warmup_epochs, small.eval_every) == (150, 5.0, 30)
    assert with_budget(small, 5_000) == small  # idempotent: a resume settles to the same
    assert stretch_schedule((16, 24, 32), 2) == (16, 16, 24, 24, 32, 32)
    assert stretch_schedule((16, 24), 1.5) == (16, 16, 24)
    assert with_budget(from_preset("cpu-proxy"), 5_000).epochs == 15  # no budget: unchanged


def test_the_teacher_rule_keeps_the_full_recipe_and_caps_subsets():
    assert teacher_schedule(0) == {"epochs": 16, "batch_size": 1024, "eval_every": 1}
    assert teacher_schedule(50_000) == teacher_schedule(0)
    assert teacher_schedule(1000) == {"epochs": 160, "batch_size": 64, "eval_every": 20}
    assert teacher_schedule(10_000) == {"epochs": 16, "batch_size": 512, "eval_every": 2}
    assert teacher_schedule(40)["batch_size"] == 32  # never more than the images
    assert teacher_schedule(10_000, epochs=4)["eval_every"] == 1


def test_epochs_with_a_budget_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        build_config("smoke", {"epochs": 3}, ["budget_images=1000"])
    assert build_config("smoke", {}, ["budget_images=1000"]).budget_images == 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train_size=50001"], "larger than the training set (50000 images)"),
        (["--set", "train_size=5"], "smaller than the 10 classes"),
        (["--epochs", "2", "--set", "budget_images=100"], "not both"),
        (["--set", "subset_sha256=0123456789abcdef", "--set", "train_size=20"], "not the ones"),
    ],
)
def test_bad_subsets_stop_before_any_work(cifar_dir, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["train", "--preset", "smoke", "--data-dir", str(cifar_dir), "--out", str(out),
                 *TINY, *args])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_run_records_its_subset_and_a_budget_sets_its_epochs(cifar_dir, tmp_path):
    out = tmp_path / "run"
    subset = ["--set", "train_size=20", "--set", "budget_images=40", "--set", "subset_seed=3"]
    args = ["train", "--preset", "smoke", "--data-dir", str(cifar_dir), "--out", str(out), *TINY,
            *subset]  # fmt: skip
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert config["epochs"] == 2 and config["budget_images"] == 40  # 40 images / 2 batches of 10
    assert summary["train_set"] == {"images": 20, "train_size": 20, "subset_seed": 3,
                                    "subset_sha256": config["subset_sha256"]}  # fmt: skip
    assert len(config["subset_sha256"]) == 16
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["classes"]
    assert saved[:2] == ["airplane", "automobile"] and len(saved) == 10  # for deit predict


@pytest.mark.slow
def test_the_curve_trains_each_size_with_its_own_teacher_and_writes_the_table(cifar_dir, tmp_path):
    out = tmp_path / "curve"
    args = ["reproduce", "--preset", "smoke", "--train-sizes", "20,40", "--train-teacher",
            "--data-dir", str(cifar_dir), "--out", str(out), "--set", "budget_images=40",
            "--set", "test_size=50", "--set", "threads=1", "--set", "batch_size=10",
            "--set", "student=deit_nano_distilled_patch8_32"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert [p["size"] for p in results["points"]] == [20, 40]
    for point in results["points"]:
        teacher = json.loads((out / f"n{point['size']}" / "teacher" / "summary.json").read_text())
        student = json.loads((out / f"n{point['size']}" / "E" / "summary.json").read_text())
        assert teacher["train_set"]["subset_sha256"] == student["train_set"]["subset_sha256"]
        assert teacher["train_set"]["images"] == point["size"]
        assert set(point["runs"]) == {"A", "E"} and point["e_minus_a"] is not None
        assert point["teacher"]["own_images"]
    table = (out / "results.md").read_text()
    assert "| 40 | 4 |" in table and table.count("- N = ") == 4  # 2 commands, 2 teachers
    for point in results["points"]:  # each size names the command that trained it
        saved = json.loads((out / f"n{point['size']}" / "reproduce.json").read_text())
        assert point["command"] == saved["command"] and "`" + " ".join(saved["command"]) in table
    for size in (20, 40):  # as in a fresh checkout: teacher files are not kept in git
        (out / f"n{size}" / "teacher" / "checkpoint.pt").unlink()
        (out / f"n{size}" / "teacher" / "teacher.safetensors").unlink()
    (out / "results.json").unlink()
    assert main(args) == 0  # a second call skips every finished run and needs no teacher file
    assert json.loads((out / "results.json").read_text())["points"] == results["points"]
    assert main([*args[:4], "20,x", *args[5:]]) == 2


def test_a_size_beyond_the_set_stops_the_curve_before_any_work(cifar_dir, tmp_path, capsys):
    out = tmp_path / "curve"
    code = main(["reproduce", "--preset", "smoke", "--train-sizes", "1000,60000", "--out",
                 str(out), "--data-dir", str(cifar_dir)])  # fmt: skip
    assert code == 2 and "60000 is larger" in capsys.readouterr().err
    assert not out.exists()


def _runs(a_seeds, e_seeds):
    """Curve entries of A and E with the given per-seed top-1s (their default heads)."""

    def entry(values, head):
        spread = (max(values) - min(values)) / 2
        return {
            "default_head": head,
            "heads": {head: {"mean": sum(values) / len(values), "spread": spread, "seeds": values}},
        }

    return {"A": entry(a_seeds, "cls"), "E": entry(e_seeds, "avg")}


def test_the_goal_needs_two_seeds_and_a_gap_beyond_both_spreads():
    from deit.curve import _gap

    assert not _gap(_runs([40.0], [52.0]))["goal_met"]  # one seed: no spread to be beyond
    gap = _gap(_runs([40.0, 42.0], [50.0, 48.0]))
    assert gap["mean"] == 8.0 and gap["per_seed"] == [10.0, 6.0] and gap["goal_met"]
    assert not _gap(_runs([40.0, 42.0], [44.0, 46.0]))["goal_met"]  # +4: under the goal
    assert not _gap(_runs([30.0, 50.0], [40.0, 60.0]))["goal_met"]  # +10 inside the spreads
