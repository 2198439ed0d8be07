"""Tests for ``deit reproduce``: the matrix A–E end to end on CIFAR-10 slices, resume, refusals."""

import json

import pytest

from deit.cli import main
from deit.config import ConfigError, from_preset
from deit.matrix import ROWS, RUNS, _check_matrix, checks, reproduce, run_config
from deit.models import parse_model_name

# The smoke preset cut further: a few steps per run, so the five runs take seconds.
TINY = ("train_size=512", "test_size=256", "epochs=2", "threads=1")


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
