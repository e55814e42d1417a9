"""Measures read off one trial's per-epoch history: epochs, optimizer steps and seconds to a
validation target, the generalization gap, and mean curves over seeds.

Targets are checked at epoch ends, so "steps to target" is the step count of the first epoch
end at or above the target: an upper bound, one epoch coarse. Shallue et al. (2019, "Measuring
the effects of data parallelism on neural network training") compare batch sizes by steps to a
target; on a CPU the seconds to it are what a user waits for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

POINTS = 100.0  # accuracies are reported in percentage points
CLEAN = "clean_train_accuracy"  # written by cnnlab.fmnist.callbacks.CleanTrainAccuracy

History = Sequence[Mapping[str, Any]]


def target_epoch(history: History, target: float) -> int | None:
    """Index (0-based) of the first epoch whose validation accuracy reaches ``target``."""
    for i, row in enumerate(history):
        v = row.get("val_accuracy")
        if v is not None and float(v) >= target:
            return i
    return None


def epochs_to_target(history: History, target: float) -> int | None:
    """First epoch (1-based) whose validation accuracy reaches ``target``; None if none does."""
    i = target_epoch(history, target)
    return None if i is None else int(history[i].get("epoch", i + 1))


def steps_to_target(history: History, target: float, steps_per_epoch: int) -> int | None:
    epochs = epochs_to_target(history, target)
    return None if epochs is None else epochs * steps_per_epoch


DECLINE_WINDOW = 10  # epochs averaged where a run has ten times as many


def decline_window(epochs: int) -> int:
    """Epochs averaged to read validation accuracy's fall: 1 (the raw curve) below 20
    epochs, up to ``DECLINE_WINDOW`` for long runs, whose highest single epoch is a noise
    peak (the maximum of 150 noisy epochs sits above their typical value with no trend)."""
    return max(1, min(DECLINE_WINDOW, epochs // 10))


def validation_decline(history: History) -> dict[str, float] | None:
    """How far validation fell after its best epoch: ``accuracy_drop`` (points, the best
    ``accuracy_window``-epoch mean of validation accuracy minus the mean of the last
    ``accuracy_window`` epochs, >= 0), ``loss_rise`` (final minus lowest validation loss,
    >= 0), ``loss_lowest`` and its 1-based ``loss_best_epoch``; None without validation
    accuracy and loss in every epoch. Overfitting shows first in the loss (confident
    mistakes), later if at all in accuracy."""
    acc = [r.get("val_accuracy") for r in history]
    loss = [r.get("val_loss") for r in history]
    if not history or any(v is None for v in acc + loss):
        return None
    acc_f, loss_f = [float(v) for v in acc], [float(v) for v in loss]
    if not all(np.isfinite(loss_f)):
        return None  # a diverged trial: no lowest loss to speak of
    best = int(np.argmin(loss_f))
    w = decline_window(len(acc_f))
    smooth = np.convolve(acc_f, np.ones(w) / w, mode="valid")
    return {
        "accuracy_drop": float(smooth.max() - smooth[-1]) * POINTS,
        "accuracy_window": float(w),
        "loss_rise": loss_f[-1] - loss_f[best],
        "loss_lowest": loss_f[best],
        "loss_best_epoch": float(history[best].get("epoch", best + 1)),
    }


# an epoch over STALL times the trial's median epoch and STALL_SECONDS above it counts at the
# median: a pause lasts minutes, while a short epoch's jitter or graph tracing takes seconds
STALL, STALL_SECONDS = 3.0, 30.0


def _epoch_seconds(history: History) -> list[float] | None:
    """Each epoch's training seconds, a stalled one counted at the trial's median epoch.

    An epoch that took more than ``STALL`` times the trial's median epoch, and over
    ``STALL_SECONDS`` more than it, was stalled from outside (the worker paused, suspended or
    starved of CPU), not slowed by its settings, so it counts at the median: a long study
    paused for an hour must not make one batch size look an hour slower. The rule is fixed in
    advance and applies to every trial alike; None when an epoch has no time.
    """
    if not history or any(r.get("seconds") is None for r in history):
        return None
    seconds = [float(r["seconds"]) for r in history]
    median = float(np.median(seconds))
    return [median if s > STALL * median and s - median > STALL_SECONDS else s for s in seconds]


def seconds_to_target(history: History, target: float) -> float | None:
    """Training seconds (validation excluded) until the end of the epoch reaching ``target``,
    stalled epochs at the median (``_epoch_seconds``)."""
    i = target_epoch(history, target)
    seconds = _epoch_seconds(history)
    if i is None or seconds is None:
        return None
    return float(sum(seconds[: i + 1]))


def training_seconds(history: History, recorded: float) -> float:
    """A trial's recorded training seconds less what its stalled epochs took beyond the median
    (``_epoch_seconds``): the recorded figure itself when no epoch stalled."""
    capped = _epoch_seconds(history)
    if capped is None:
        return float(recorded)
    excess = sum(float(r["seconds"]) - c for r, c in zip(history, capped, strict=True))
    return float(recorded) - excess


def has_clean_gap(history: History) -> bool:
    return bool(history) and history[-1].get(CLEAN) is not None


def generalization_gap(history: History) -> float:
    """Training minus validation accuracy at the last epoch: on clean training images when the
    trial measured them (cnnlab's trainer always does), else the running training accuracy."""
    last = history[-1]
    train = last.get(CLEAN)
    if train is None:
        train = last["train_accuracy"]
    return float(train) - float(last["val_accuracy"])


def mean_curve(histories: Sequence[History], key: str, scale: float = POINTS) -> list[float]:
    """Per-epoch mean of ``key`` over the histories, as long as the shortest one."""
    if not histories or any(not h or h[0].get(key) is None for h in histories):
        return []
    n = min(len(h) for h in histories)
    return [float(np.mean([float(h[i][key]) for h in histories])) * scale for i in range(n)]


def mean_gap_curve(histories: Sequence[History]) -> list[float]:
    """Per-epoch mean of clean training minus validation accuracy, in points."""
    train, val = mean_curve(histories, CLEAN), mean_curve(histories, "val_accuracy")
    return [t - v for t, v in zip(train, val, strict=False)]


def mean_elapsed(histories: Sequence[History]) -> list[float]:
    """Per-epoch mean of the training seconds elapsed by that epoch's end."""
    if not histories:
        return []
    n = min(len(h) for h in histories)
    cum = [np.cumsum([float(r.get("seconds") or 0.0) for r in h[:n]]) for h in histories]
    return [float(x) for x in np.mean(cum, axis=0)]


def median_or_none(values: Sequence[float | None]) -> tuple[float | None, int]:
    """Median of the values that exist, and how many exist."""
    got = [float(v) for v in values if v is not None]
    return (float(np.median(got)) if got else None), len(got)
