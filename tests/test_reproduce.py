"""Tests for ``deit reproduce``: the matrix A–E end to end on CIFAR-10 slices, resume, refusals."""

import json
from pathlib import Path

import pytest

from deit import matrix as matrix_module
from deit.cli import main
from deit.config import ConfigError, from_preset
from deit.matrix import _check_matrix, reproduce, run_config
from deit.matrix_table import (
    ROWS,
    RUNS,
    TRAINING_ORDER,
    checks,
    collect,
    parse_runs,
    results_markdown,
)
from deit.models import parse_model_name
from deit.plots import curve_epochs

# The smoke preset cut further: a few steps per run, so the five runs take seconds (on every
# core: with threads=1 the fixture took 2-3 s longer).
TINY = ("train_size=128", "test_size=128", "epochs=2")


@pytest.fixture(scope="module")
def matrix(cifar_dir, tmp_path_factory):
    """One tiny matrix, made once through the command line."""
    out = tmp_path_factory.mktemp("matrix")
    args = ["reproduce", "--preset", "smoke", "--out", str(out), "--data-dir", str(cifar_dir)]
    assert main(args + [arg for item in TINY for arg in ("--set", item)]) == 0
    return out


@pytest.mark.slow
def test_every_file_is_written(matrix):
    for name in ("results.md", "results.json", "curves.png", "table.png", "reproduce.json"):
        assert (matrix / name).stat().st_size > 0, name
    for run in "ABCDE":
        for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"):
            assert (matrix / run / name).is_file(), f"{run}/{name}"
    assert (matrix / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_every_row_of_the_report_is_filled_from_the_right_run_and_head(matrix):
    results = json.loads((matrix / "results.json").read_text())
    assert results["preset"] == "smoke" and results["evaluated_on"] == "test"
    assert [(r["run"], r["head"]) for r in results["rows"]] == [(r.run, r.head) for r in ROWS]
    summaries = {run: json.loads((matrix / run / "summary.json").read_text()) for run in "ABCDE"}
    for row in results["rows"]:
        assert 0 <= row["top1"] <= 100
        assert set(row) >= {"method", "run", "head", "label", "teacher", "top1", "report_top1"}
        if row["run"] == "teacher":
            assert row["top1"] == summaries["E"]["teacher_top1"] > 80
        else:
            assert row["top1"] == summaries[row["run"]]["test_top1"][row["head"]]
            assert row["seconds"] == summaries[row["run"]]["wall_seconds"]
    assert {r["run"]: r["report_top1"] for r in results["rows"]}["A"] == 67.69
    assert [len(run["curve"]) for run in results["runs"]] == [2] * 5
    assert set(results["checks"]) and all(isinstance(v, bool) for v in results["checks"].values())


@pytest.mark.slow
def test_the_runs_differ_only_in_token_and_loss(matrix):
    configs = {run: json.loads((matrix / run / "config.json").read_text()) for run in "ABCDE"}
    for run in RUNS:
        config = configs[run.name]
        assert parse_model_name(config["student"])["distilled"] == run.distilled
        assert config["distillation"] == run.distillation
        assert config["distillation_alpha"] == run.alpha
    varying = ("student", "distillation", "distillation_alpha")
    rest = [{k: v for k, v in c.items() if k not in varying} for c in configs.values()]
    assert all(r == rest[0] for r in rest)


@pytest.mark.slow
def test_markdown_has_the_table_every_head_and_the_checks(matrix):
    text = (matrix / "results.md").read_text()
    assert text.count("| DeiT") >= 7 and "| teacher |" in text
    assert "67.69 %" in text and "## Every head" in text and "## The paper's claims" in text
    for run in "ABCDE":
        assert f"\n| {run} |" in text


@pytest.mark.slow
def test_a_second_call_skips_finished_runs_and_finishes_an_interrupted_one(matrix, cifar_dir):
    before = json.loads((matrix / "E" / "summary.json").read_text())
    (matrix / "E" / "summary.json").unlink()  # as if killed after its last checkpoint
    stamps = {run: (matrix / run / "checkpoint.pt").stat().st_mtime_ns for run in "ABCD"}
    results = reproduce("smoke", matrix, data_dir=str(cifar_dir), overrides=TINY)
    after = json.loads((matrix / "E" / "summary.json").read_text())
    assert after["test_top1"] == before["test_top1"]
    assert stamps == {run: (matrix / run / "checkpoint.pt").stat().st_mtime_ns for run in "ABCD"}
    assert results["rows"][-2]["top1"] == before["test_top1"]["avg"]


@pytest.mark.slow
def test_a_directory_of_another_matrix_is_refused(matrix, cifar_dir, capsys):
    with pytest.raises(ConfigError, match="holds a matrix made with"):
        reproduce("smoke", matrix, data_dir=str(cifar_dir), overrides=("epochs=1",))
    code = main(["reproduce", "--preset", "smoke", "--out", str(matrix), "--seeds", "2"])
    assert code == 2 and "holds a matrix" in capsys.readouterr().err


def test_more_seeds_extend_the_same_matrix(tmp_path):
    record = {"preset": "smoke", "overrides": [], "seeds": 1, "train_teacher": False}
    _check_matrix(tmp_path, record)
    _check_matrix(tmp_path, record | {"seeds": 3})
    assert json.loads((tmp_path / "reproduce.json").read_text())["seeds"] == 3
    with pytest.raises(ConfigError, match="holds a matrix"):
        _check_matrix(tmp_path, record | {"preset": "cpu-proxy"})


def test_bad_seed_count_and_bad_override_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="seeds"):
        reproduce("smoke", tmp_path / "a", seeds=0)
    with pytest.raises(ConfigError, match="unknown config key"):
        reproduce("smoke", tmp_path / "b", overrides=("colour=red",))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_run_config_adds_or_removes_the_distillation_token():
    base = from_preset("cpu-proxy")
    names = {run.name: run_config(base, run, 3) for run in RUNS}
    assert names["A"].student == "deit_micro_patch4_32" and names["A"].seed == 3
    assert names["E"].student == "deit_micro_distilled_patch4_32"
    assert {(c.embed_dim, c.depth, c.num_heads) for c in names.values()} == {(128, 6, 4)}
    sizes = {"embed_dim": 128, "depth": 6, "num_heads": 4}
    old = from_preset("cpu-proxy", student="deit_tiny_distilled_patch4_32", **sizes)
    old = run_config(old, RUNS[0], 0)  # the name as recorded before micro, overrides kept
    assert old.student == "deit_tiny_patch4_32" and old.model_overrides() == sizes
    assert names["C"].distillation_alpha == 1.0 and names["E"].distillation_alpha is None


def test_checks_follow_the_issue_targets():
    def rows(values):
        return [
            {"run": r.run, "head": r.head, "teacher": r.teacher, "top1": v}
            for r, v in zip(ROWS, values, strict=True)
        ]

    good = checks(rows([60, 61, 62, 70.5, 70, 65, 71, 94]))
    assert all(good.values())
    collapsed = checks(rows([60, 61, 40, 8, 55, 65, 46, 94]))
    assert not any(collapsed.values())


# --- a subset of the runs (--runs), with the training faked: no data, no model -----------------

REPO = Path(__file__).resolve().parents[1]
OLD_MATRIX = REPO / "results" / "cpu-proxy" / "matrix-2026-11-27"  # the issue-5 preset's matrix
# Test top-1 per run and head of the fake training: E best, C above A.
FAKE_TOP1 = {
    "A": {"cls": 60.0},
    "B": {"cls": 61.0},
    "C": {"cls": 62.0},
    "D": {"cls": 63.0, "dist": 64.0, "avg": 65.0},
    "E": {"cls": 70.0, "dist": 71.0, "avg": 71.5},
}


@pytest.fixture
def fake_training(monkeypatch):
    """Replace the training of a run by writing a finished run directory; return the runs trained.

    A finished run is read back, not trained again, as the real ``_train_run`` does.
    """
    calls = []

    def fake_train_run(config, where, command):
        if (where / "summary.json").is_file():
            return json.loads((where / "summary.json").read_text())
        run = where.name.split(".")[0]
        calls.append(where.name)
        top1 = FAKE_TOP1[run]
        summary = {
            "student": config.student,
            "test_top1": top1,
            "distillation": config.distillation,
            "teacher": None if run == "A" else "cifar10-teacher",
            "teacher_top1": None if run == "A" else 94.01,
            "teacher_agreement": None if run == "A" else 80.0,
            "evaluated_on": "test",
            "epochs": 2,
            "wall_seconds": 6.0,
            "hardware": {"cpu": "fake", "threads": 1, "torch": "0"},
        }
        where.mkdir(parents=True, exist_ok=True)
        curve = [{"epoch": 1, "test_top1": {k: v - 5 for k, v in top1.items()}, "img_per_s": 100.0}]
        curve.append({"epoch": 2, "test_top1": top1, "img_per_s": 120.0})
        (where / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in curve))
        (where / "summary.json").write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(matrix_module, "_train_run", fake_train_run)
    return calls


@pytest.mark.parametrize(
    ("given", "parsed"),
    [("ABCDE", "ABCDE"), ("ABE", "ABE"), ("eba", "ABE"), ("a,b,e", "ABE"), (" E , c ", "CE")],
)
def test_runs_are_normalised_to_the_matrix_order(given, parsed):
    assert parse_runs(given) == parsed


@pytest.mark.parametrize(
    ("given", "message"),
    [("XYZ", "unknown: XYZ"), ("ABF", "unknown: F"), ("", "at least one"), (" , ", "at least one"),
     ("AAB", "at most once")],
)  # fmt: skip
def test_bad_runs_fail_before_any_work_naming_the_valid_letters(given, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as err:
        parse_runs(given)
    assert "ABCDE" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=message):
        reproduce("smoke", tmp_path / "out", runs=given)
    assert not (tmp_path / "out").exists()


def test_a_subset_trains_only_its_runs_in_training_order(fake_training, tmp_path):
    results = reproduce("smoke", tmp_path, runs="a,e,b", seeds=2)
    assert fake_training == ["E", "B", "A", "E.seed1", "B.seed1", "A.seed1"]
    assert [name for name in TRAINING_ORDER if name in "ABE"] == ["E", "B", "A"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(fake_training)
    assert json.loads((tmp_path / "reproduce.json").read_text())["runs"] == "ABE"
    assert results["runs_trained"] == "ABE"
    assert json.loads((tmp_path / "results.json").read_text())["runs_trained"] == "ABE"


def test_a_subset_reports_only_its_rows_and_the_checks_they_decide(fake_training, tmp_path):
    results = reproduce("smoke", tmp_path, runs="ABE")
    expected = [(r.run, r.head) for r in ROWS if r.run in ("A", "B", "E", "teacher")]
    assert [(r["run"], r["head"]) for r in results["rows"]] == expected
    assert results["rows"][-1]["run"] == "teacher" and results["rows"][-1]["top1"] == 94.01
    assert results["teacher"] == "cifar10-teacher"
    assert [run["directory"] for run in results["runs"]] == ["A", "B", "E"]
    assert results["checks"] == {
        "every hard-distillation row ≥ no distillation": True,  # E's rows ≥ A's 60
        "E dist head within 2 points of E": True,
        "E (class + distillation, hard) best student row": True,
        "best student row ≥ 70 %": True,
    }
    text = (tmp_path / "results.md").read_text()
    assert "Only runs A, B, E were trained." in text and "| teacher |" in text
    assert "(C, cls head)" not in text and "(D, avg head)" not in text
    for run in "ABE":
        assert f"\n| {run} |" in text
    assert "\n| C |" not in text and "\n| D |" not in text
    for name in ("curves.png", "table.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_a_subset_without_e_or_a_drops_those_checks_and_only_a_has_no_teacher_row(
    fake_training, tmp_path
):
    results = reproduce("smoke", tmp_path / "bcd", runs="BCD")
    assert results["rows"][-1]["run"] == "teacher"  # from D, the first trained of E, D, C, B
    assert list(results["checks"]) == ["best student row ≥ 70 %"]
    results = reproduce("smoke", tmp_path / "a", runs="A")
    assert [r["run"] for r in results["rows"]] == ["A"] and results["teacher"] is None
    assert list(results["checks"]) == ["best student row ≥ 70 %"]
    assert "no teacher." in (tmp_path / "a" / "results.md").read_text()
    assert (tmp_path / "a" / "table.png").is_file()


def test_more_runs_later_train_only_the_missing_ones(fake_training, tmp_path):
    reproduce("smoke", tmp_path, runs="E")
    results = reproduce("smoke", tmp_path, runs="ABCDE")
    assert fake_training == ["E", "D", "C", "B", "A"]  # E once, then the four missing
    assert [(r["run"], r["head"]) for r in results["rows"]] == [(r.run, r.head) for r in ROWS]
    assert json.loads((tmp_path / "reproduce.json").read_text())["runs"] == "ABCDE"
    assert "Only runs" not in (tmp_path / "results.md").read_text()


def test_a_call_that_trains_nothing_keeps_the_command_that_trained(
    fake_training, tmp_path, monkeypatch
):
    monkeypatch.setattr(matrix_module, "_command", lambda: ["deit", "reproduce", "--runs", "ACE"])
    reproduce("smoke", tmp_path, runs="ACE")
    monkeypatch.setattr(matrix_module, "_command", lambda: ["deit", "reproduce", "--runs", "AE"])
    results = reproduce("smoke", tmp_path, runs="AE")  # A and E are done: a regathering
    assert fake_training == ["E", "C", "A"]
    saved = json.loads((tmp_path / "reproduce.json").read_text())
    assert saved["runs"] == "ACE" and saved["command"][-1] == "ACE"
    assert results["command"][-1] == "AE"  # the table says who gathered it
    reproduce("smoke", tmp_path, runs="ABE")  # trains B: the record moves on
    assert fake_training[-1] == "B"
    assert json.loads((tmp_path / "reproduce.json").read_text())["runs"] == "ABE"


def test_a_reproduce_json_without_runs_counts_as_all_five(tmp_path):
    old = (OLD_MATRIX / "reproduce.json").read_text()
    assert "runs" not in json.loads(old)
    (tmp_path / "reproduce.json").write_text(old)
    record = json.loads(old) | {"runs": "ABCDE", "command": ["deit", "reproduce"]}
    _check_matrix(tmp_path, record)
    assert (tmp_path / "reproduce.json").read_text() == old  # same matrix: not rewritten
    _check_matrix(tmp_path, record | {"runs": "ABE"})
    assert json.loads((tmp_path / "reproduce.json").read_text())["runs"] == "ABE"


def test_old_results_without_runs_trained_render_as_all_five():
    results = json.loads((OLD_MATRIX / "results.json").read_text())
    results.pop("runs_trained", None)
    text = results_markdown(results)
    assert "Only runs" not in text and "teacher `" in text
    assert checks(results["rows"]) == results["checks"]


def test_cli_runs_of_unknown_letters_exit_2_with_one_line(tmp_path, capsys):
    code = main(["reproduce", "--preset", "smoke", "--out", str(tmp_path / "m"), "--runs", "XYZ"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("deit reproduce: error: runs must be letters of ABCDE")
    assert not (tmp_path / "m").exists()


def test_cli_passes_runs_to_the_api(fake_training, tmp_path, capsys):
    assert main(["reproduce", "--preset", "smoke", "--out", str(tmp_path), "--runs", "ea"]) == 0
    assert fake_training == ["E", "A"]
    assert "results.md" in capsys.readouterr().out


def test_curves_skip_unevaluated_epochs_and_plot_each_point_at_its_epoch(tmp_path, monkeypatch):
    """eval_every leaves lines with test_top1 None: no point, and the others keep their epoch."""
    lines = [{"epoch": 1, "test_top1": None, "img_per_s": 90.0},
             {"epoch": 2, "test_top1": {"cls": 40.0}, "img_per_s": 100.0},
             {"epoch": 3, "test_top1": {"cls": 50.0}, "img_per_s": 110.0}]  # fmt: skip
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    summary = {"student": "s", "test_top1": {"cls": 50.0}, "distillation": "none",
               "teacher_agreement": None, "evaluated_on": "test", "epochs": 3, "wall_seconds": 6.0,
               "hardware": {"cpu": "fake", "threads": 1, "torch": "0"}}  # fmt: skip
    results = collect(tmp_path, "smoke", {("A", 0): summary}, 1, ["deit"], runs="A")
    run = results["runs"][0]
    assert run["curve"] == [40.0, 50.0] and run["curve_epochs"] == [2, 3]
    assert run["img_per_s"] == 100.0  # every epoch trained, evaluated or not
    old = {k: v for k, v in run.items() if k != "curve_epochs"}  # a results.json of before
    assert curve_epochs(run) == [2, 3] and curve_epochs(old) == [1, 2]
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from deit.plots import plot_curves

    plotted, real_plot = [], Axes.plot

    def recording_plot(ax, x, y, *args, **kwargs):
        plotted.append((list(x), y))
        return real_plot(ax, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording_plot)
    plot_curves({**results, "runs": [run, old]}, tmp_path / "curves.png")
    assert plotted == [([2, 3], [40.0, 50.0]), ([1, 2], [40.0, 50.0])]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
