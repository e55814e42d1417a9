"""A trial whose loss became NaN is a result (its network at chance), not a failed trial that
every re-run would fail again: a bracketing sweep tries rates that diverge."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.fmnist.callbacks import EpochClock  # noqa: E402
from cnnlab.study.trial import diverged_outcome  # noqa: E402


def test_a_diverged_trial_is_recorded_at_what_its_network_predicts():
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])  # fmt: skip
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.full_like(kernel, np.nan), bias])  # what NaN loss leaves
    recorder = EpochClock()
    recorder.set_model(model)
    recorder.history = [{"epoch": 1, "train_loss": float("nan"), "train_accuracy": 0.1,
                         "val_loss": float("nan"), "val_accuracy": 0.1, "lr": 1.0,
                         "seconds": 2.0}]  # fmt: skip
    y = np.array([0] * 30 + [1] * 50 + [2] * 20)
    x = np.random.default_rng(0).random((100, 28, 28)).astype(np.float32)
    out = diverged_outcome(recorder, x, y, start=0.0)
    assert out["metrics"]["diverged"] is True
    assert out["metrics"]["test_accuracy"] == pytest.approx(0.3)  # class 0 for every image
    assert out["metrics"]["test_loss"] is None and out["metrics"]["train_seconds"] == 2.0
    assert (out["test_pred"] == 0).all() and out["history"] == recorder.history
    assert out["metrics"]["params"] == 28 * 28 * 10 + 10
