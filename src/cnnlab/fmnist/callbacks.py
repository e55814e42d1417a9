"""Keras callbacks for cnnlab runs: per-epoch clock and history, divergence stop, Rich
progress, accuracy on clean training images, test probes.

None of them hooks a training step synchronously, so ``model.fit`` runs as fast as a plain
call: the clock and the divergence check work per epoch, and the progress bar declares itself
``async_safe`` so Keras hands it the step logs on a helper thread instead of waiting for them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import keras
import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cnnlab.fmnist.result import EpochRecord


def current_lr(model) -> float:
    """The learning rate the optimizer is using now (schedules evaluated at this step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class EpochClock(keras.callbacks.Callback):
    """Times the training part of each epoch (validation excluded) and keeps the history rows
    (epoch, train/val loss and accuracy, lr, seconds). Put it first in the callback list, so
    work done by later callbacks at the end of an epoch is not counted either. ``on_epoch`` is
    called with each row as it is recorded (MLflow tracking, for one)."""

    def __init__(self, on_epoch: Callable[[EpochRecord], None] | None = None):
        super().__init__()
        self.history: list[EpochRecord] = []
        self._on_epoch = on_epoch
        self._start = 0.0
        self._seconds: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._seconds = None
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):  # validation starts: training for this epoch is over
        if self._seconds is None:
            self._seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if self._seconds is None:
            self._seconds = time.perf_counter() - self._start
        logs = logs or {}
        row = EpochRecord(
            epoch=epoch + 1,
            train_loss=_f(logs.get("loss")),
            train_accuracy=_f(logs.get("accuracy")),
            val_loss=_f(logs.get("val_loss")),
            val_accuracy=_f(logs.get("val_accuracy")),
            lr=current_lr(self.model),
            seconds=self._seconds,
        )
        if CleanTrainAccuracy.KEY in logs:  # written by a CleanTrainAccuracy placed before
            row[CleanTrainAccuracy.KEY] = float(logs[CleanTrainAccuracy.KEY])
        self.history.append(row)
        if self._on_epoch is not None:
            self._on_epoch(row)

    @property
    def train_seconds(self) -> float:
        return float(sum(row["seconds"] for row in self.history))


def _f(value) -> float | None:
    return None if value is None else float(value)


class CleanTrainAccuracy(keras.callbacks.Callback):
    """Accuracy on a fixed subset of the training images at the end of every epoch, in
    inference mode: dropout off, batch norm on its moving statistics, no augmentation (the
    augmentation layers act only in training). The generalization gap is this minus the
    validation accuracy.

    Why not Keras' ``accuracy`` log: it is averaged over an epoch whose weights kept changing,
    with dropout and augmentation on. On the old quick profile it stayed below validation
    accuracy for every level (gap -7.9 points for the baseline, -14.8 with all regularizers),
    so the gap it gave could not show overfitting, nor regularization reducing it (issue 13).

    Place it before :class:`EpochClock`: it writes ``clean_train_accuracy`` into the epoch's
    logs, which the clock then records. Its evaluation is not counted as training time: the
    clock stops timing an epoch when validation starts, before any ``on_epoch_end``.
    """

    KEY = "clean_train_accuracy"

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1024):
        super().__init__()
        self.x = np.asarray(x, dtype=np.float32)
        self.y = np.asarray(y)
        self.batch_size = batch_size
        self.accuracy: list[float] = []

    @classmethod
    def subset(cls, x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> CleanTrainAccuracy:
        """On ``n`` training images drawn once (seeded), the same ones at every epoch."""
        pick = np.random.default_rng(seed).permutation(len(x))[: min(n, len(x))]
        return cls(x[np.sort(pick)], y[np.sort(pick)])

    def on_epoch_end(self, epoch, logs=None):
        proba = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        accuracy = float((np.asarray(proba).argmax(axis=1) == self.y).mean())
        self.accuracy.append(accuracy)
        if logs is not None:
            logs[self.KEY] = accuracy


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training after the first epoch whose training loss is not a finite number and
    remembers it (``epoch``, 1-based, and ``loss``). Keras' ``TerminateOnNaN`` checks every
    batch instead, which makes each training step wait for its loss value."""

    def __init__(self):
        super().__init__()
        self.epoch: int | None = None
        self.loss: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if self.epoch is None and loss is not None and not math.isfinite(loss):
            self.epoch, self.loss = epoch + 1, float(loss)
            self.model.stop_training = True


def epoch_line(epoch: int, epochs: int, logs: dict, seconds: float | None) -> str:
    """One epoch as Keras users read it: ``epoch 3/12  loss 0.3121  acc 0.8876  val_loss
    0.3011  val_acc 0.8900  (12.3 s)``."""
    names = (("loss", "loss"), ("accuracy", "acc"), ("val_loss", "val_loss"),
             ("val_accuracy", "val_acc"))  # fmt: skip
    parts = [f"epoch {epoch}/{epochs}"]
    parts += [f"{short} {logs[key]:.4f}" for key, short in names if logs.get(key) is not None]
    if seconds is not None:
        parts.append(f"({seconds:.1f} s)")
    return "  ".join(parts)


class RichProgress(keras.callbacks.Callback):
    """One bar for the run (epochs, ETA) and one for the current epoch (steps, loss); and one
    line per epoch, printed as the epoch ends (flushed, so ``cnnlab train > log`` fills the log
    as training goes) and appended to ``log`` (the run's ``train.log``) when given."""

    async_safe = True  # Keras may call the batch hook from a helper thread (no step waits)

    def __init__(self, description: str = "training", console=None, log=None):
        super().__init__()
        self.description = description
        self.console = console
        self.log = log
        self._progress = None
        self._done = 0
        self._started = 0.0

    def on_train_begin(self, logs=None):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        epochs = self.params.get("epochs") or 1
        self._run = self._progress.add_task(self.description, total=epochs, info="")
        self._epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        steps = self.params.get("steps")
        if self._epoch is not None:
            self._progress.remove_task(self._epoch)
        self._done = 0
        self._started = time.perf_counter()
        self._epoch = self._progress.add_task(
            f"epoch {epoch + 1}/{self.params.get('epochs')}", total=steps, info=""
        )

    def on_train_batch_end(self, batch, logs=None):
        # may run on a helper thread and out of order: never move the bar backwards
        self._done = max(self._done, batch + 1)
        loss = (logs or {}).get("loss")
        info = f"loss {loss:.4f}" if loss is not None else ""
        self._progress.update(self._epoch, completed=self._done, info=info)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"loss {logs['loss']:.4f}"] if "loss" in logs else []
        if "val_accuracy" in logs:
            parts.append(f"val acc {logs['val_accuracy']:.4f}")
        self._progress.update(self._epoch, completed=self.params.get("steps"))
        self._progress.update(self._run, advance=1, info="  ".join(parts))
        seconds = time.perf_counter() - self._started
        line = epoch_line(epoch + 1, self.params.get("epochs") or 1, logs, seconds)
        self._progress.console.print(line, markup=False, highlight=False)
        with contextlib.suppress(OSError, ValueError):  # a closed pipe stops no training
            self._progress.console.file.flush()
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def on_train_end(self, logs=None):
        if self._progress is not None:
            if self._epoch is not None:
                self._progress.remove_task(self._epoch)
            self._progress.stop()
            self._progress = None
