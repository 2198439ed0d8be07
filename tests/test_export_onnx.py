"""deit export --format onnx: the graph, its metadata and dynamic batch, parity, bad input."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from deit import export
from deit.cli import main
from deit.config import ConfigError, TrainConfig
from deit.export import ExportFailed, export_model
from deit.models import create_model

onnx = pytest.importorskip("onnx", reason="pip install 'deit[onnx]' (the dev extra has it)")
onnxruntime = pytest.importorskip("onnxruntime", reason="pip install 'deit[onnx]'")


def save_student(path, student="deit_nano_distilled_patch4_32", num_classes=10):
    torch.manual_seed(0)
    config = TrainConfig(student=student)
    model = create_model(student, num_classes=num_classes)
    torch.save({"config": dataclasses.asdict(config), "model": model.state_dict()}, path)
    return model.eval()


@pytest.mark.slow  # about 3 s of torch.export and ONNX translation, more on a busy machine
def test_onnx_file_matches_pytorch_at_any_batch_and_says_how_to_preprocess(tmp_path):
    model = save_student(tmp_path / "s.pt")
    report = export_model(tmp_path / "s.pt", "onnx", tmp_path / "s.onnx", head="dist")
    assert set(report["max_abs_diff"]) == {1, 7}
    assert max(report["max_abs_diff"].values()) <= 1e-4 == report["tolerance"]
    session = onnxruntime.InferenceSession(str(tmp_path / "s.onnx"))
    x = torch.randn(3, 3, 32, 32)
    (logits,) = session.run(["logits"], {"images": x.numpy()})
    assert np.abs(logits - model(x, head="dist").detach().numpy()).max() <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "s.onnx")).metadata_props}
    assert json.loads(meta["deit.classes"])[:2] == ["airplane", "automobile"]
    assert meta["deit.head"] == "dist"
    assert json.loads(meta["deit.preprocess"])["mode"] == "plain"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.onnx", "s.pt"]


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch, capsys):
    """A file whose outputs differ more than allowed is deleted; exit 1 in one line."""
    from deit.export import onnx_file

    def differs(model, preprocess, classes, path, source):
        path.write_bytes(b"graph")
        return {"max_abs_diff": {1: 0.0, 7: 2e-3}}

    monkeypatch.setattr(onnx_file, "write_onnx", differs)
    save_student(tmp_path / "s.pt")
    with pytest.raises(ExportFailed, match="up to 0.002"):
        export_model(tmp_path / "s.pt", "onnx", tmp_path / "s.onnx")
    assert main(["export", "--checkpoint", str(tmp_path / "s.pt"), "--format", "onnx",
                 "--out", str(tmp_path / "s.onnx")]) == 1  # fmt: skip
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt"]


def test_bad_input_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    save_student(tmp_path / "s.pt")
    (tmp_path / "taken.onnx").write_bytes(b"x")
    teacher = tmp_path / "t.pt"
    torch.save({"arch": "fastcnn", "model": {"w": torch.zeros(1)}}, teacher)
    cases = [
        (["--checkpoint", str(tmp_path / "s.pt"), "--out", str(tmp_path / "taken.onnx")],
         "--overwrite"),
        (["--checkpoint", str(teacher), "--out", str(tmp_path / "t.onnx")], "not a DeiT student"),
        (["--checkpoint", "deit_giant_patch16_224", "--out", str(tmp_path / "g.onnx")],
         "official DeiT name"),
    ]  # fmt: skip
    for args, message in cases:
        assert main(["export", "--format", "onnx", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(tmp_path / "s.pt", "tflite", tmp_path / "s.tflite")
    with pytest.raises(ConfigError, match="average of both heads"):
        export_model(tmp_path / "s.pt", "timm", tmp_path / "s.st", head="cls")
    assert (tmp_path / "taken.onnx").read_bytes() == b"x"


def test_a_missing_extra_names_the_pip_install(tmp_path, capsys, monkeypatch):
    save_student(tmp_path / "s.pt")
    real = export.importlib.import_module

    def without_onnxruntime(name, *args):
        if name == "onnxruntime":
            raise ModuleNotFoundError("No module named 'onnxruntime'")
        return real(name, *args)

    monkeypatch.setattr(export.importlib, "import_module", without_onnxruntime)
    out = tmp_path / "s.onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "s.pt"), "--format", "onnx",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime" in err[0] and "pip install 'deit[onnx]'" in err[0]
    assert not out.exists()
