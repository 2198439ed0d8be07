"""Distillation wiring of deit.train: the teacher's inputs, its checks, a real run."""

import json

import pytest
import torch

from deit import hardware, trainer
from deit.config import ConfigError, from_preset
from deit.models.cnn import FastCNN


class SpyTeacher(torch.nn.Module):
    """Records the batches it is fed and answers fixed logits."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.zeros(len(x), 10)


def test_the_teacher_sees_exactly_the_students_batch():
    config = from_preset("smoke", distillation="hard")
    spy = SpyTeacher()
    loss_fn = trainer.build_loss(config, spy)
    x = torch.randn(4, 3, 32, 32)
    outputs = (torch.randn(4, 10, requires_grad=True), torch.randn(4, 10, requires_grad=True))
    loss = loss_fn(outputs, torch.tensor([0, 1, 2, 3]), x)
    assert len(spy.seen) == 1 and torch.equal(spy.seen[0], x)
    loss.backward()
    assert outputs[1].grad is not None


def test_no_teacher_is_loaded_without_distillation(monkeypatch):
    monkeypatch.setattr(trainer, "load_teacher", lambda name, arch: pytest.fail("loaded"))
    assert trainer.build_teacher(from_preset("smoke"), 10, (0.5,) * 3, (0.2,) * 3) is None


def test_a_teacher_with_another_class_count_is_refused(monkeypatch):
    monkeypatch.setattr(trainer, "load_teacher", lambda name, arch: FastCNN(num_classes=5).eval())
    with pytest.raises(ConfigError, match="predicts 5 classes"):
        trainer.build_teacher(from_preset("smoke", distillation="soft"), 10, (0.5,) * 3, (0.2,) * 3)


@pytest.mark.slow
def test_hard_distillation_run_records_teacher_accuracy_and_agreement(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    """A bf16 teacher on a machine without bf16 units still runs, with a one-line warning."""
    monkeypatch.setattr(hardware, "fast_bf16", lambda device: False)
    config = from_preset(
        "smoke", distillation="hard", data_dir=str(cifar_dir), epochs=1, train_size=256,
        test_size=500, ema_decay=0.99, teacher_bf16=True,
    )  # fmt: skip
    summary = trainer.train(config, tmp_path / "run")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "bfloat16" in line]
    assert warnings == [
        "warning: teacher_bf16 asked for, but this cpu has no bfloat16 units "
        "(emulated: slower than float32); --set teacher_bf16=false is faster here"
    ]
    assert set(summary["test_top1_ema"]) == {"cls", "dist", "avg"}
    assert summary["teacher_top1"] > 90, "the shipped teacher must see its own inputs"
    assert 0 <= summary["teacher_agreement"] <= 100
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["teacher_agreement"] == summary["teacher_agreement"]


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    cifar_dir, tmp_path, monkeypatch
):
    config = from_preset("smoke", data_dir=str(cifar_dir), epochs=2, train_size=256, test_size=100)
    steps_per_epoch = 256 // config.batch_size
    real, calls = trainer.distillation_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) > steps_per_epoch + 1 else loss

    monkeypatch.setattr(trainer, "distillation_loss", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        trainer.train(config, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == steps_per_epoch
    assert all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.slow  # a real two-epoch run on CIFAR, about 2 s
@pytest.mark.parametrize(
    "message, stops",
    [("DataLoader worker (pid 4674) is killed by signal: Killed. ", True),
     ("mat1 and mat2 shapes cannot be multiplied", False)],
)  # fmt: skip
def test_a_dead_loader_worker_stops_the_run_in_one_line_keeping_its_checkpoint(
    cifar_dir, tmp_path, monkeypatch, message, stops
):
    """PyTorch reports a killed worker (the out-of-memory killer) wherever the training process
    is; the run ends as after a bad file, with what to do. Other errors are not dressed up."""
    from deit.rundir import RunFailed

    config = from_preset("smoke", data_dir=str(cifar_dir), epochs=2, train_size=128,
                         test_size=64, student="deit_nano_distilled_patch8_32")  # fmt: skip
    real, calls = trainer.train_one_epoch, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError(message)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", dies_in_epoch_two)
    with pytest.raises(RunFailed if stops else RuntimeError) as caught:
        trainer.train(config, tmp_path / "run")
    if stops:
        assert str(caught.value) == (
            "DataLoader worker (pid 4674) is killed by signal: Killed; the run stopped in epoch "
            "2. If memory ran out, resume with fewer workers (--set workers=N)"
        )
        assert caught.value.run_path == tmp_path / "run"  # its checkpoint is named as kept
    else:
        assert type(caught.value) is RuntimeError and str(caught.value) == message
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 128 // config.batch_size


def test_the_teacher_sees_the_mixed_batch_the_student_sees(cifar_dir, tmp_path, monkeypatch):
    seen = {}
    real_loss_fn = trainer.build_loss

    def recording_loss_fn(config, teacher):
        inner = real_loss_fn(config, teacher)

        def loss(outputs, targets, x):
            seen.setdefault("x", x.clone())
            seen.setdefault("targets", targets)
            seen.setdefault("teacher", teacher.adapt(x).clone())
            return inner(outputs, targets, x)

        return loss

    monkeypatch.setattr(trainer, "build_loss", recording_loss_fn)
    config = from_preset(
        "smoke", distillation="soft", data_dir=str(cifar_dir), epochs=1, train_size=128,
        test_size=100, mixup=0.8, cutmix=1.0,
    )  # fmt: skip
    trainer.train(config, tmp_path / "run")
    assert seen["targets"].dtype == torch.float32, "Mixup/CutMix must give soft targets"
    # Same statistics for student and teacher: the wrapper's conversion is the identity here.
    assert torch.allclose(seen["teacher"], seen["x"], atol=1e-5)


@pytest.mark.slow
def test_gpu_path_flags_run_on_the_cpu(cifar_dir, tmp_path, monkeypatch):
    """bf16 autocast, torch.compile and gradient clipping work here too.

    torch.compile runs with the ``aot_eager`` backend: TorchDynamo captures the
    student's step and AOT autograd its backward, as with the default backend,
    but inductor's C++ code generation (PyTorch's own: 24 s of this test on a
    cold inductor cache, benchmarks/suite/) is left out.
    """
    from torch._dynamo.utils import counters

    real_compile, compiled = torch.compile, []

    def aot_eager(model, **kwargs):
        compiled.append(model)
        return real_compile(model, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch, "compile", aot_eager)
    graphs = counters["stats"]["unique_graphs"]
    config = from_preset(
        "smoke", data_dir=str(cifar_dir), epochs=1, train_size=128, test_size=100,
        embed_dim=32, depth=1, bf16=True, compile=True, clip_grad=1.0,
    )  # fmt: skip
    summary = trainer.train(config, tmp_path / "run")
    assert summary["test_top1"]["avg"] >= 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state["model"]), "plain keys saved"
    assert len(compiled) == 1 and counters["stats"]["unique_graphs"] > graphs, "step captured"


@pytest.mark.slow
def test_low_resolution_epochs_reach_the_student_and_not_the_teacher(
    cifar_dir, tmp_path, monkeypatch
):
    """With img_size_schedule the student gets the small view; the teacher the full one."""
    teacher_sizes, student_sizes, labels_seen = [], [], []
    real_loss_fn, real_create_model = trainer.build_loss, trainer.create_model

    def recording_loss_fn(config, teacher):
        inner = real_loss_fn(config, teacher)

        def loss(outputs, targets, x):
            teacher_sizes.append(x.shape[-1])
            labels_seen.append(targets.clone())
            return inner(outputs, targets, x)

        return loss

    def recording_create_model(*args, **kwargs):
        model = real_create_model(*args, **kwargs)
        model.patch_embed.register_forward_pre_hook(
            lambda module, inputs: (
                student_sizes.append(inputs[0].shape[-1]) if module.training else None
            )
        )
        return model

    monkeypatch.setattr(trainer, "build_loss", recording_loss_fn)
    monkeypatch.setattr(trainer, "create_model", recording_create_model)
    config = from_preset(
        "smoke", distillation="hard", data_dir=str(cifar_dir), epochs=2, train_size=128,
        test_size=100, img_size_schedule=(16,), repeated_augmentation=2, threads=1,
    )  # fmt: skip
    summary = trainer.train(config, tmp_path / "run")
    steps = 128 // config.batch_size
    assert student_sizes == [16] * steps + [32] * steps
    assert teacher_sizes == [32] * (2 * steps)
    labels = labels_seen[0]
    assert torch.equal(labels[0::2], labels[1::2]), "repeated augmentation: each image twice"
    assert summary["test_top1"]["avg"] >= 0  # evaluated at the full 32×32


def test_the_token_keep_schedule_sets_each_epochs_kept_tokens(cifar_dir, tmp_path, monkeypatch):
    """token_keep_schedule's rate in the first epochs, then token_keep; evaluation sees all."""
    lengths = []  # (training?, tokens entering the first block)
    real_create_model = trainer.create_model

    def recording_create_model(*args, **kwargs):
        model = real_create_model(*args, **kwargs)
        model.blocks[0].register_forward_pre_hook(
            lambda module, inputs: lengths.append((module.training, inputs[0].shape[1]))
        )
        return model

    monkeypatch.setattr(trainer, "create_model", recording_create_model)
    config = from_preset(
        "smoke", data_dir=str(cifar_dir), epochs=3, train_size=128, test_size=64, threads=1,
        token_keep_schedule=(0.25, 0.5), token_keep=1.0,
    )  # fmt: skip
    trainer.train(config, tmp_path / "run")
    steps = 128 // config.batch_size
    training = [n for is_training, n in lengths if is_training]
    assert training == [2 + 16] * steps + [2 + 32] * steps + [2 + 64] * steps
    assert {n for is_training, n in lengths if not is_training} == {2 + 64}


def test_a_checkpoint_of_another_process_count_is_refused():
    from deit.distributed import World

    config = from_preset("smoke")
    state = {"config": {"student": config.student}, "ranks": [{}, {}]}
    with pytest.raises(ConfigError, match=r"written by 2 process\(es\); resume it with as many"):
        trainer._restore({}, state, config, World())


@pytest.mark.slow
def test_eval_every_evaluates_every_nth_epoch_and_the_last(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    """eval_every=2 of 3 epochs: epochs 2 and 3 evaluated; epoch 1's line says None."""
    evaluated = []  # each model evaluated: the student or its EMA
    real_evaluate = trainer._evaluate_all

    def counting_evaluate(model, *args, **kwargs):
        evaluated.append(model)
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "_evaluate_all", counting_evaluate)
    config = from_preset(
        "smoke", distillation="hard", data_dir=str(cifar_dir), epochs=3, train_size=128,
        test_size=64, threads=1, ema_decay=0.9, eval_every=2,
    )  # fmt: skip
    summary = trainer.train(config, tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3]
    assert len(evaluated) == 4, "student and EMA, after epochs 2 and 3 only"
    first, *rest = lines
    assert first["test_top1"] is None and first["teacher_agreement"] is None
    assert first["test_images"] is None and [m["test_images"] for m in rest] == [64, 64]
    assert first["test_top1_ema"] is None
    assert first["train_loss"] > 0 and first["img_per_s"] > 0 and first["lr"] > 0
    assert all(0 <= m["data_wait"] < 1 for m in lines)  # the share of an epoch spent waiting
    for m in rest:
        assert set(m["test_top1"]) == {"cls", "dist", "avg"} and m["teacher_agreement"] is not None
        assert set(m["test_top1_ema"]) == {"cls", "dist", "avg"}
    assert summary["test_top1"] == lines[-1]["test_top1"]
    assert summary["test_top1_ema"] == lines[-1]["test_top1_ema"]
    assert summary["test_images"] == 64  # test_size: the first 64 of the test set
    assert summary["teacher_agreement"] == lines[-1]["teacher_agreement"]
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(shown) == 3 and "avg" in shown[1] and "avg" in shown[2]
    assert not any(head in shown[0] for head in ("cls", "dist", "avg"))  # not evaluated
    assert all(line.endswith(" %") and "waiting for data" in line for line in shown)
