"""Learning-rate schedules follow their published shapes; optimizers match their names."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.fmnist.config import DEFAULT_LR, OPTIMIZERS, preset

keras = pytest.importorskip("keras")

from cnnlab.fmnist.optim import (  # noqa: E402
    OneCycle,
    is_builtin_schedule,
    learning_rate,
    make_optimizer,
    warmup_cosine,
)


def values(schedule, steps) -> np.ndarray:
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def cosine_reference(peak: float, total: int, warmup: int, steps: int) -> np.ndarray:
    """The curve of cnnlab's own warm-up cosine schedule before it became Keras' CosineDecay:
    step n (from 0) counts as n + 1; warm-up peak * (n + 1) / warmup, then cosine to zero."""
    n = np.arange(steps, dtype=np.float64) + 1.0
    progress = np.clip((n - warmup) / max(total - warmup, 1), 0.0, 1.0)
    cosine = 0.5 * peak * (1.0 + np.cos(np.pi * progress))
    return np.where(n <= warmup, peak * np.minimum(n / max(warmup, 1), 1.0), cosine)


@pytest.mark.parametrize(
    ("total", "warmup"),
    [(100, 10), (100, 0), (100, 1), (100, 2), (300, 60), (37, 36), (5, 5), (1, 0), (1, 1)],
)
def test_warmup_cosine_keeps_the_curve_of_the_former_cnnlab_schedule(total, warmup):
    schedule = warmup_cosine(peak_lr=0.1, total_steps=total, warmup_steps=warmup)
    np.testing.assert_allclose(
        values(schedule, range(total + 3)), cosine_reference(0.1, total, warmup, total + 3),
        rtol=1e-5, atol=1e-8,
    )  # fmt: skip


def test_warmup_cosine_rises_linearly_then_decays_to_zero():
    v = values(warmup_cosine(peak_lr=0.1, total_steps=100, warmup_steps=10), range(100))
    np.testing.assert_allclose(v[:10], 0.1 * np.arange(1, 11) / 10, rtol=1e-5)
    assert v.argmax() == 9 and v.max() == pytest.approx(0.1)
    assert np.all(np.diff(v[10:]) <= 1e-9)  # monotone decay after the warm-up
    assert v[-1] < 1e-3


def test_one_cycle_starts_low_peaks_then_anneals_far_below_the_start():
    s = OneCycle(peak_lr=0.1, total_steps=200, pct_start=0.25)
    v = values(s, range(201))
    assert v[0] == pytest.approx(0.1 / 25)
    assert v.argmax() == 50 and v.max() == pytest.approx(0.1)
    assert v[-1] == pytest.approx(0.1 / 25 / 1e4, rel=1e-3)


def test_schedules_survive_serialisation():
    for s in (warmup_cosine(0.01, 50, 5), warmup_cosine(0.01, 50), OneCycle(0.01, 50)):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
        np.testing.assert_allclose(values(restored, [0, 7, 49]), values(s, [0, 7, 49]))


def test_config_picks_the_schedule_over_the_whole_run():
    c = preset("tutorial").replace(schedule="cosine", warmup_epochs=2, epochs=10)
    s = learning_rate(c, steps_per_epoch=30)
    np.testing.assert_allclose(
        values(s, range(305)), cosine_reference(1e-3, 300, 60, 305), rtol=1e-5, atol=1e-10
    )
    assert learning_rate(c.replace(schedule="constant"), 30) == 1e-3


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_name_builds_its_optimizer_with_the_default_rate(name):
    opt = make_optimizer(preset("tutorial").replace(optimizer=name, lr=None), steps_per_epoch=10)
    expected = {
        "sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "rmsprop": "RMSprop",
        "adagrad": "Adagrad", "adadelta": "Adadelta", "adam": "Adam", "adamw": "AdamW",
        "nadam": "Nadam",
    }  # fmt: skip
    assert type(opt).__name__ == expected[name]
    assert float(keras.ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(DEFAULT_LR[name])
    if name in ("momentum", "nesterov"):
        assert opt.momentum == 0.9 and opt.nesterov == (name == "nesterov")
    if name == "sgd":
        assert opt.momentum == 0.0


def test_adamw_decays_weights_by_default_and_takes_a_given_decay():
    """At weight decay 0 AdamW is Adam step for step (a study once compared the two and found
    them identical in every digit); by default it applies Keras' own decay."""
    base = preset("tutorial").replace(optimizer="adamw")
    assert base.decoupled_weight_decay == 0.004
    assert make_optimizer(base, 10).weight_decay == pytest.approx(0.004)
    assert make_optimizer(base.replace(weight_decay=0.05), 10).weight_decay == pytest.approx(0.05)
    assert make_optimizer(base.replace(weight_decay=0.0), 10).weight_decay == 0.0
    assert base.replace(optimizer="adam").decoupled_weight_decay is None
    assert base.replace(optimizer="sgd", weight_decay=0.1).decoupled_weight_decay is None


def test_only_the_one_cycle_schedule_is_a_cnnlab_class():
    base = preset("fast").replace(epochs=4, warmup_epochs=1)
    kinds = {
        schedule: is_builtin_schedule(make_optimizer(base.replace(schedule=schedule), 10))
        for schedule in ("constant", "cosine", "onecycle")
    }
    assert kinds == {"constant": True, "cosine": True, "onecycle": False}
