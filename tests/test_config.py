"""Tests for configs, presets and key=value overrides."""

import dataclasses
import json
from pathlib import Path

import pytest

from deit.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    build_config,
    config_from_dict,
    from_preset,
    load_config,
    save_config,
    validate,
)
from deit.models.registry import resolve_architecture

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_every_preset_builds():
    for name in PRESETS:
        assert isinstance(from_preset(name), TrainConfig)


def test_overrides_take_the_field_type():
    config = apply_overrides(TrainConfig(), ["lr=1e-3", "epochs=3", "validation=true"])
    assert config.lr == 1e-3 and config.epochs == 3 and config.validation is True
    assert apply_overrides(config, ["data_dir=none"]).data_dir is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("nonsense=1", "unknown config key 'nonsense'"),
        ("lr", "key=value"),
        ("epochs=many", "epochs: expected int"),
        ("lr=-1", "lr must be positive"),
        ("validation=maybe", "expected true or false"),
        ("label_smoothing=1.5", "label_smoothing"),
        ("dataset=mnist", "cifar10, cifar100, folder or shards"),
        ("token_keep=0", r"token_keep must be in \(0, 1\]"),
        ("token_keep=1.5", r"token_keep must be in \(0, 1\]"),
        ("token_keep_schedule=0.5,0", r"token_keep must be in \(0, 1\], got 0"),
        ("train_crop=center", "train_crop must be random_resized or none"),
        ("normalization=mine", "normalization must be dataset"),
        ("rrc_scale=0.5,0.1", "rrc_scale must be"),
        ("rrc_scale=", "rrc_scale takes two numbers"),
        ("repeated_augmentation=0", "repeated_augmentation must be positive"),
        ("img_size_schedule=16,18", "18 is not a multiple of the patch size 4"),
        ("img_size_schedule=64", "up to the image size 32"),
        ("eval_every=0", "eval_every must be positive, got 0"),
        ("eval_every=-2", "eval_every must be positive, got -2"),
        ("eval_every=2.5", "eval_every: expected int"),
    ],
)
def test_bad_overrides_fail_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(TrainConfig(), [override]))


def test_eval_every_is_set_like_any_field_and_defaults_to_each_epoch(tmp_path):
    assert TrainConfig().eval_every == 1 and from_preset("cpu-long").eval_every == 3
    config = build_config("cpu-proxy", {}, ["eval_every=3"])
    assert config.eval_every == 3
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == config


def test_tuple_fields_take_comma_lists():
    from deit.teacher_training import TeacherConfig

    assert apply_overrides(TeacherConfig(), ["widths=32,64,64"]).widths == (32, 64, 64)


def test_an_empty_value_clears_a_tuple_field():
    config = apply_overrides(
        from_preset("cpu-proxy", img_size_schedule=(16, 24)), ["img_size_schedule="]
    )
    assert config.img_size_schedule == ()
    assert [config.img_size_at(e) for e in range(2)] == [32, 32]


def test_token_keep_schedule_gives_each_first_epoch_its_rate_then_token_keep(tmp_path):
    config = validate(
        apply_overrides(TrainConfig(), ["token_keep_schedule=0.25,0.5", "token_keep=0.75"])
    )
    assert [config.token_keep_at(e) for e in range(3)] == [0.25, 0.5, 0.75]
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == config


def test_img_size_schedule_gives_each_first_epoch_its_size_then_the_full_one(tmp_path):
    config = validate(apply_overrides(TrainConfig(), ["img_size_schedule=16,24"]))
    assert [config.img_size_at(e) for e in range(3)] == [16, 24, 32]
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == config


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        from_preset("huge")


def test_preset_changes_ignore_none_and_apply_values():
    config = from_preset("smoke", epochs=None, seed=5)
    assert config.epochs == PRESETS["smoke"]["epochs"] and config.seed == 5


def test_scaled_lr_follows_batch():
    assert TrainConfig(lr=5e-4, batch_size=1024).scaled_lr == pytest.approx(1e-3)


def test_config_round_trips_through_json(tmp_path):
    config = from_preset("smoke", seed=3)
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == config


def sizes(config):
    """Width, depth and heads as a config records them."""
    return config.embed_dim, config.depth, config.num_heads


@pytest.mark.parametrize(
    "preset, student, size",
    [
        ("smoke", "deit_nano_distilled_patch4_32", (64, 4, 2)),
        ("cpu-proxy", "deit_micro_distilled_patch4_32", (128, 6, 4)),
        ("paper", "deit_tiny_distilled_patch4_32", (192, 12, 3)),
    ],
)
def test_presets_name_their_student_without_size_overrides(preset, student, size):
    assert PRESETS[preset]["student"] == student
    assert not {"embed_dim", "depth", "num_heads"} & set(PRESETS[preset])
    config = from_preset(preset)
    assert sizes(config) == size and config.model_overrides() == {}


def test_validate_fills_in_the_sizes_the_name_gives_and_keeps_overrides(tmp_path):
    assert sizes(TrainConfig()) == (0, 0, 0)
    assert sizes(validate(TrainConfig())) == (192, 12, 3)
    config = validate(TrainConfig(student="deit_small_patch4_32", depth=6))
    assert sizes(config) == (384, 6, 6) and config.model_overrides() == {"depth": 6}
    save_config(from_preset("cpu-proxy"), tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["embed_dim"], saved["depth"], saved["num_heads"]) == (128, 6, 4)
    with pytest.raises(ConfigError, match="not divisible by 3 heads"):
        validate(TrainConfig(embed_dim=128))


def test_a_new_student_takes_its_own_sizes_unless_set():
    small = validate(apply_overrides(from_preset("paper"), ["student=deit_small_patch4_32"]))
    assert sizes(small) == (384, 12, 6) and small.model_overrides() == {}
    tiny = validate(apply_overrides(from_preset("cpu-proxy"), ["student=deit_tiny_patch4_32"]))
    assert sizes(tiny) == (192, 12, 3)
    shallow = validate(apply_overrides(from_preset("smoke"), ["depth=2"]))
    shallow = validate(apply_overrides(shallow, ["student=deit_tiny_distilled_patch4_32"]))
    assert sizes(shallow) == (192, 2, 3)
    both = ["student=deit_small_patch4_32", "embed_dim=96", "num_heads=2"]
    assert sizes(validate(apply_overrides(from_preset("smoke"), both))) == (96, 12, 2)


@pytest.mark.parametrize(
    "recorded, size",
    [((128, 6, 4), (128, 6, 4)), ((0, 0, 0), (192, 12, 3))],
)
def test_an_old_cpu_proxy_config_with_the_old_name_loads_as_recorded(recorded, size):
    values = json.loads(json.dumps(dataclasses.asdict(from_preset("cpu-proxy"))))
    values |= {"student": "deit_tiny_distilled_patch4_32"}
    values |= dict(zip(("embed_dim", "depth", "num_heads"), recorded, strict=True))
    config = config_from_dict(values)
    assert config.student == "deit_tiny_distilled_patch4_32" and sizes(config) == size
    arch = resolve_architecture(config.student, **config.model_overrides())
    assert arch["size"] == ("micro" if size == (128, 6, 4) else "tiny")


@pytest.mark.parametrize(
    "run",
    [
        "matrix-2026-11-27/A",
        "matrix-2026-11-27/E",
        "matrix-2026-11-27/A.seed1",
        "tuning/t5",
        "../finetune/E48",
    ],
)
def test_committed_run_configs_still_load_and_name_micro(run):
    path = RESULTS / "cpu-proxy" / run / "config.json"
    config = load_config(path)
    assert config.student == json.loads(path.read_text())["student"]  # kept as recorded
    assert resolve_architecture(config.student, **config.model_overrides())["size"] == "micro"


def test_cpu_long_is_cpu_proxy_three_times_as_long():
    proxy, long = from_preset("cpu-proxy"), from_preset("cpu-long")
    assert long.epochs == 3 * proxy.epochs
    assert long.warmup_epochs == 3 * proxy.warmup_epochs
    # the same fraction of epochs at each size
    assert [long.img_size_at(e) for e in range(long.epochs)] == [
        proxy.img_size_at(e // 3) for e in range(long.epochs)
    ]
    same = {"epochs", "warmup_epochs", "img_size_schedule", "token_keep_schedule"}
    assert {k: v for k, v in vars(long).items() if k not in same} == {
        k: v for k, v in vars(proxy).items() if k not in same
    }


def test_stretched_repeats_every_schedule_entry():
    from deit.config import stretched

    preset = {"epochs": 4, "warmup_epochs": 0.5, "img_size_schedule": (16, 24),
              "token_keep_schedule": (0.25,)}  # fmt: skip
    assert stretched(preset, 2) == {
        "epochs": 8,
        "warmup_epochs": 1.0,
        "img_size_schedule": (16, 16, 24, 24),
        "token_keep_schedule": (0.25, 0.25),
    }
