"""Learning-rate schedules follow their published shapes; optimizers match their names."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.fmnist.config import DEFAULT_LR, OPTIMIZERS, preset

keras = pytest.importorskip("keras")

from cnnlab.fmnist.optim import OneCycle, WarmupCosine, learning_rate, make_optimizer  # noqa: E402


def values(schedule, steps) -> np.ndarray:
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_warmup_cosine_rises_linearly_then_decays_to_zero():
    s = WarmupCosine(peak_lr=0.1, total_steps=100, warmup_steps=10)
    v = values(s, range(100))
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
    for s in (WarmupCosine(0.01, 50, 5), OneCycle(0.01, 50)):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
        np.testing.assert_allclose(values(restored, [0, 7, 49]), values(s, [0, 7, 49]))


def test_config_picks_the_schedule_over_the_whole_run():
    c = preset("tutorial").replace(schedule="cosine", warmup_epochs=2, epochs=10)
    s = learning_rate(c, steps_per_epoch=30)
    assert isinstance(s, WarmupCosine)
    assert (s.total_steps, s.warmup_steps, s.peak_lr) == (300, 60, 1e-3)
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
