"""Seconds to a validation target: summed per epoch, with externally stalled epochs (a paused
worker) counted at the trial's median epoch so a pause cannot pass for a slow setting."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.study.analysis import curves


def _history(seconds, accuracies):
    return [
        {"epoch": i + 1, "seconds": s, "val_accuracy": a}
        for i, (s, a) in enumerate(zip(seconds, accuracies, strict=True))
    ]


def test_seconds_sum_the_epochs_up_to_the_one_reaching_the_target():
    h = _history([12.0, 10.0, 11.0, 10.5], [0.80, 0.85, 0.91, 0.92])
    assert curves.seconds_to_target(h, 0.90) == pytest.approx(33.0)
    assert curves.epochs_to_target(h, 0.90) == 3
    assert curves.steps_to_target(h, 0.90, 100) == 300


def test_a_paused_epoch_counts_at_the_median_and_a_slow_first_epoch_does_not():
    # the first epoch traces the graph (twice the median), the second was paused for an hour
    h = _history([20.0, 3610.0, 10.0, 10.0, 10.0], [0.80, 0.85, 0.91, 0.92, 0.93])
    assert curves.seconds_to_target(h, 0.90) == pytest.approx(20.0 + 10.0 + 10.0)


def test_no_seconds_when_the_target_is_never_reached_or_an_epoch_has_no_time():
    h = _history([10.0, 10.0], [0.80, 0.85])
    assert curves.seconds_to_target(h, 0.90) is None
    h = [{"epoch": 1, "seconds": 10.0, "val_accuracy": 0.95}, {"epoch": 2, "val_accuracy": 0.96}]
    assert curves.seconds_to_target(h, 0.90) is None


def test_training_seconds_lose_only_what_a_stalled_epoch_took_beyond_the_median():
    steady = _history([20.0, 10.0, 10.0, 10.0], [0.8, 0.85, 0.9, 0.91])
    assert curves.training_seconds(steady, 51.5) == 51.5  # the recorded figure, untouched
    paused = _history([20.0, 10.0, 610.0, 10.0, 10.0], [0.8, 0.85, 0.9, 0.91, 0.92])
    assert curves.training_seconds(paused, 661.5) == pytest.approx(661.5 - 600.0)
    assert curves.training_seconds([{"epoch": 1, "val_accuracy": 0.9}], 7.0) == 7.0


def test_validation_decline_reads_the_peak_the_lowest_loss_and_the_end():
    h = [
        {"epoch": i + 1, "val_accuracy": a, "val_loss": loss}
        for i, (a, loss) in enumerate([(0.80, 0.60), (0.83, 0.50), (0.82, 0.70), (0.81, 0.95)])
    ]
    d = curves.validation_decline(h)
    assert d["accuracy_drop"] == pytest.approx(2.0)  # 83% at epoch 2, 81% at the end
    assert d["loss_rise"] == pytest.approx(0.45) and d["loss_lowest"] == pytest.approx(0.50)
    assert d["loss_best_epoch"] == 2.0
    assert curves.validation_decline([{"epoch": 1, "val_accuracy": 0.8}]) is None  # no loss
    h[1]["val_loss"] = float("nan")  # a diverged trial has no lowest loss
    assert curves.validation_decline(h) is None
    assert curves.validation_decline([]) is None


def test_a_long_runs_fall_is_read_from_moving_averages_not_a_noise_peak():
    """150 epochs of a flat curve with epoch-to-epoch noise: the raw peak sits well above the
    end with no trend at all; 10-epoch means invent much less of a fall, and find a real one."""
    rng = np.random.default_rng(0)
    flat = 0.82 + rng.normal(0, 0.004, 150)
    h = [{"epoch": i + 1, "val_accuracy": a, "val_loss": 0.5} for i, a in enumerate(flat)]
    d = curves.validation_decline(h)
    raw = (flat.max() - flat[-5:].mean()) * 100
    assert d["accuracy_window"] == 10 and d["accuracy_drop"] < raw / 2
    falling = flat - np.linspace(0, 0.02, 150)  # two points lost over the run
    h = [{"epoch": i + 1, "val_accuracy": a, "val_loss": 0.5} for i, a in enumerate(falling)]
    assert curves.validation_decline(h)["accuracy_drop"] == pytest.approx(2.0, abs=0.6)
    assert [curves.decline_window(n) for n in (4, 12, 19, 20, 48, 150, 300)] == [
        1, 1, 1, 2, 4, 10, 10]  # fmt: skip
