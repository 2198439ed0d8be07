"""Tests for configs, presets and key=value overrides."""

import pytest

from deit.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    from_preset,
    load_config,
    save_config,
    validate,
)


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
        ("dataset=mnist", "cifar10 or cifar100"),
        ("repeated_augmentation=0", "repeated_augmentation must be positive"),
        ("img_size_schedule=16,18", "18 is not a multiple of the patch size 4"),
        ("img_size_schedule=64", "up to the image size 32"),
    ],
)
def test_bad_overrides_fail_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(TrainConfig(), [override]))


def test_tuple_fields_take_comma_lists():
    from deit.teacher_training import TeacherConfig

    assert apply_overrides(TeacherConfig(), ["widths=32,64,64"]).widths == (32, 64, 64)


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
