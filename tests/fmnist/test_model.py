"""Each config option changes the built model as it says (parameter counts, layer kinds)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import PRESETS, TrainConfig, feature_map_size, preset
from cnnlab.fmnist.model import build_model, mirror, predict_proba, translate, tta_views

keras = pytest.importorskip("keras")

TUTORIAL = preset("tutorial")


def kinds(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def conv_kernels(model) -> list[tuple[int, int]]:
    return [layer.kernel_size for layer in model.layers if type(layer).__name__ == "Conv2D"]


def test_tutorial_is_the_keras_mnist_convnet_exactly():
    model = build_model(TUTORIAL)
    # Conv32-3x3, pool, Conv64-3x3, pool, flatten, dropout 0.5, dense 10: 34,826 parameters
    assert model.count_params() == 34826
    assert kinds(model) == [
        "InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
        "Flatten", "Dropout", "Dense",
    ]  # fmt: skip
    assert model.get_layer("dropout").rate == 0.5


def test_kernel_size_changes_every_conv_layer():
    model = build_model(TUTORIAL.replace(kernel_size=5))
    assert conv_kernels(model) == [(5, 5), (5, 5)]
    # conv1 5*5*32+32, conv2 5*5*32*64+64, flatten 4*4*64 -> 10
    assert model.count_params() == (25 * 32 + 32) + (25 * 32 * 64 + 64) + (4 * 4 * 64 * 10 + 10)


def test_first_kernel_size_changes_only_the_first_layer():
    model = build_model(TUTORIAL.replace(first_kernel_size=7))
    assert conv_kernels(model) == [(7, 7), (3, 3)]


def test_filters_and_convs_per_block():
    model = build_model(TUTORIAL.replace(filters=(8, 16, 32), convs_per_block=2, padding="same"))
    convs = [la for la in model.layers if type(la).__name__ == "Conv2D"]
    assert [la.filters for la in convs] == [8, 8, 16, 16, 32, 32]
    assert kinds(model).count("MaxPooling2D") == 3


def test_padding_same_keeps_the_size_until_pooling():
    valid = build_model(TUTORIAL)
    same = build_model(TUTORIAL.replace(padding="same"))
    assert valid.get_layer("flatten").output.shape[1] == 5 * 5 * 64
    assert same.get_layer("flatten").output.shape[1] == 7 * 7 * 64


def test_pool_padding_same_keeps_the_last_row_and_column_of_odd_maps():
    # tutorial: 28 -> 26 -> 13 -> 11 -> 5 (valid pooling drops a row and column) or 6 (same)
    assert build_model(TUTORIAL).get_layer("flatten").output.shape[1] == 5 * 5 * 64
    same = TUTORIAL.replace(pool_padding="same")
    assert build_model(same).get_layer("flatten").output.shape[1] == 6 * 6 * 64
    assert feature_map_size(same) == 6
    # three `same` blocks: 28 -> 14 -> 7 -> 3 or 4
    three = TUTORIAL.replace(filters=(8, 16, 32), padding="same")
    for pool_padding, side in (("valid", 3), ("same", 4)):
        config = three.replace(pool_padding=pool_padding)
        assert feature_map_size(config) == side
        assert build_model(config).get_layer("flatten").output.shape[1] == side * side * 32


def test_batch_norm_adds_normalisation_and_drops_conv_bias():
    model = build_model(TUTORIAL.replace(batch_norm=True))
    assert kinds(model).count("BatchNormalization") == 2
    assert all(not la.use_bias for la in model.layers if type(la).__name__ == "Conv2D")
    # minus the two conv biases (32 + 64), plus 4 numbers per channel for batch norm
    assert model.count_params() == 34826 - 96 + 4 * 96


def test_batch_norm_momentum_reaches_every_normalisation_layer():
    model = build_model(TUTORIAL.replace(batch_norm=True, batch_norm_momentum=0.9))
    bn = [la for la in model.layers if type(la).__name__ == "BatchNormalization"]
    assert bn and all(la.momentum == pytest.approx(0.9) for la in bn)


def test_dropout_zero_removes_the_layer_and_rate_is_used():
    assert "Dropout" not in kinds(build_model(TUTORIAL.replace(dropout=0.0)))
    assert build_model(TUTORIAL.replace(dropout=0.25)).get_layer("dropout").rate == 0.25


def test_l2_regularises_every_kernel():
    plain, reg = build_model(TUTORIAL), build_model(TUTORIAL.replace(l2=1e-3))
    assert plain.losses == []
    assert len(reg.losses) == 3  # two conv kernels and the classifier
    assert float(keras.ops.sum(keras.ops.stack(reg.losses))) > 0


def test_dense_units_and_global_pool_and_avg_pooling_and_activation():
    dense = build_model(TUTORIAL.replace(dense_units=128))
    assert dense.get_layer("dense").units == 128
    assert dense.count_params() == 34826 - (1600 * 10 + 10) + (1600 * 128 + 128) + (128 * 10 + 10)
    gap = build_model(TUTORIAL.replace(global_pool=True))
    assert "GlobalAveragePooling2D" in kinds(gap) and "Flatten" not in kinds(gap)
    assert gap.count_params() == 34826 - 1600 * 10 + 64 * 10
    assert "AveragePooling2D" in kinds(build_model(TUTORIAL.replace(pooling="avg")))
    gelu = build_model(TUTORIAL.replace(activation="gelu"))
    assert gelu.get_layer("conv1_1").activation.__name__ == "gelu"


def test_augmentation_is_active_only_in_training():
    model = build_model(TUTORIAL.replace(augment=True, dropout=0.0))
    aug = model.get_layer("augment")
    assert [type(la).__name__ for la in aug.layers] == [
        "RandomTranslation", "RandomFlip", "RandomErasing",
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(aug(x, training=False), x)  # identity at inference
    changed = keras.ops.convert_to_numpy(aug(x, training=True))
    assert not np.allclose(changed, x)
    assert model.count_params() == 34826  # augmentation adds no weights


@pytest.mark.parametrize(
    "change, parts",
    [
        ({"erasing": 0.0}, ["RandomTranslation", "RandomFlip"]),
        ({"shift": 0.0, "erasing": 0.0}, ["RandomFlip"]),
        ({"flip": False}, ["RandomTranslation", "RandomErasing"]),
        ({"shift": 0.0, "flip": False}, ["RandomErasing"]),
    ],
)
def test_each_augmentation_part_can_be_left_out(change, parts):
    model = build_model(TUTORIAL.replace(augment=True, **change))
    assert [type(la).__name__ for la in model.get_layer("augment").layers] == parts


def test_augmentation_strengths_reach_the_layers():
    aug = build_model(TUTORIAL.replace(augment=True, shift=0.15, erasing=0.3)).get_layer("augment")
    shift, _, erase = aug.layers
    assert (shift.height_factor, shift.width_factor) == (0.15, 0.15)
    assert tuple(erase.factor) == (0.3, 0.3)
    # off by default: no augmentation layer at all
    assert "augment" not in [la.name for la in build_model(TUTORIAL).layers]


def test_test_time_augmentation_averages_each_image_and_its_mirror():
    model = build_model(TUTORIAL.replace(filters=(4, 8)))
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (8, 28, 28, 1)).astype("float32")
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1, :], verbose=0)
    np.testing.assert_allclose(predict_proba(model, x), plain, rtol=1e-5, atol=1e-6)
    with_tta = predict_proba(model, x, tta=True)
    np.testing.assert_allclose(with_tta, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(with_tta, plain)  # random images are not symmetric
    np.testing.assert_array_equal(mirror(mirror(x)), x)
    np.testing.assert_array_equal(mirror(x)[:, :, 0], x[:, :, -1])


def test_shifted_views_move_the_image_and_fill_with_background():
    x = np.arange(2 * 5 * 5, dtype="float32").reshape(2, 5, 5, 1) + 1
    down = translate(x, 2, 0)
    np.testing.assert_array_equal(down[:, 2:], x[:, :3])
    assert not down[:, :2].any()  # uncovered rows are black
    left = translate(x, 0, -1)
    np.testing.assert_array_equal(left[:, :, :4], x[:, :, 1:])
    assert not left[:, :, 4].any()
    np.testing.assert_array_equal(translate(x, 0, 0), x)
    assert len(tta_views(x)) == 1 and len(tta_views(x, tta=True)) == 2
    views = tta_views(x, tta=True, tta_shift=1)
    assert len(views) == 10
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1], mirror(x))
    # the image and its mirror image, each in place and moved one pixel each way
    offsets = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
    expected = {translate(im, dy, dx).tobytes() for im in (x, mirror(x)) for dy, dx in offsets}
    assert {v.tobytes() for v in views} == expected and len(expected) == 10


def test_shifted_test_time_augmentation_averages_ten_views():
    model = build_model(TUTORIAL.replace(filters=(4, 8)))
    x = np.random.default_rng(2).integers(0, 256, (6, 28, 28, 1)).astype("float32")
    views = tta_views(x, tta=True, tta_shift=2)
    expected = np.mean([model.predict(v, verbose=0) for v in views], axis=0)
    got = predict_proba(model, x, tta=True, tta_shift=2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, predict_proba(model, x, tta=True), atol=1e-4)


def test_every_preset_builds_and_classifies_ten_classes():
    for name, config in PRESETS.items():
        model = build_model(config)
        assert model.output_shape == (None, 10), name
        proba = keras.ops.convert_to_numpy(model(np.zeros((2, 28, 28, 1), "float32")))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_kernel_that_shrinks_the_map_to_nothing_is_refused():
    assert feature_map_size(TUTORIAL.replace(kernel_size=7)) == 2
    with pytest.raises(CnnlabError, match="padding 'same'"):
        TUTORIAL.replace(kernel_size=11)
    assert feature_map_size(TUTORIAL.replace(kernel_size=11, padding="same")) == 7


@pytest.mark.parametrize(
    "change, field",
    [
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"activation": "sigmoidish"}, "activation"),
        ({"padding": "full"}, "padding"),
        ({"pool_padding": "full"}, "pool-padding"),
        ({"dropout": 1.0}, "dropout"),
        ({"filters": (32, 64, 128, 256)}, "filters"),
        ({"filters": ("32", 64)}, "filters"),
        ({"filters": (32.5, 64)}, "filters"),
        ({"filters": (0, 64)}, "filters"),
        ({"train_limit": 10}, "train-limit"),
        ({"warmup_epochs": 15}, "warmup-epochs"),
        ({"batch_norm_momentum": 1.0}, "batch-norm-momentum"),
        ({"shift": 0.6}, "shift"),
        ({"erasing": 1.5}, "erasing"),
        ({"tta": True, "tta_shift": 5}, "tta-shift"),
        ({"tta": True, "tta_shift": 1.5}, "tta-shift"),
        ({"tta": True, "tta_shift": True}, "tta-shift"),
        ({"tta_shift": 1}, "tta-shift"),  # shifted views without test-time augmentation
        ({"augment": True, "shift": 0.0, "flip": False, "erasing": 0.0}, "augment"),
    ],
)
def test_invalid_configs_name_the_field(change, field):
    with pytest.raises(CnnlabError, match=f"invalid --{field}"):
        TrainConfig(**change)


def test_config_round_trips_through_its_json_dict():
    config = preset("strong")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(CnnlabError, match="unknown config field"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})


@pytest.mark.parametrize(
    ("changes", "features"),
    [
        ({}, (5, 5, 64)),  # valid: 28 -> 26 -> 13 -> 11 -> 5
        ({"kernel_size": 7}, (2, 2, 64)),  # 28 -> 22 -> 11 -> 5 -> 2: size is also map size
        ({"kernel_size": 7, "padding": "same"}, (7, 7, 64)),  # same: 28 -> 14 -> 7 for any size
        ({"global_pool": True}, (64,)),
    ],
)
def test_architecture_cost_counts_multiply_adds_layer_by_layer(changes, features):
    from cnnlab.fmnist.model import architecture_cost

    config = TUTORIAL.replace(**changes)
    cost = architecture_cost(config)
    k, (h2, w2) = config.kernel_size, features[:2] if len(features) == 3 else (5, 5)
    same = config.padding == "same"
    side1 = 28 if same else 28 - k + 1  # conv1 output
    side2 = side1 // 2 if same else side1 // 2 - k + 1  # conv2 output
    flat = features[0] if config.global_pool else h2 * w2 * 64
    expected = side1**2 * k * k * 1 * 32 + side2**2 * k * k * 32 * 64 + flat * 10
    assert cost["multiply_adds"] == expected
    assert cost["features"] == features
    assert cost["params"] == build_model(config).count_params()
