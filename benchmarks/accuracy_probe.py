"""A Keras callback the time-to-accuracy benchmark uses: accuracy on held-out images after every
epoch, with and without test-time augmentation. Here, beside the benchmark, because nothing
in cnnlab itself evaluates on the test set during training (tests/fmnist/test_train.py tests
it by loading this file)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from cnnlab.fmnist import model as fmnist_model


class TestAccuracyProbe(keras.callbacks.Callback):
    """Accuracy on held-out images after every epoch (for time-to-accuracy benchmarks; the
    EpochClock placed before it excludes this evaluation from training time).

    ``accuracy`` is measured as the run evaluates (with the test-time augmentation ``tta`` and
    ``tta_shift``); ``plain_accuracy`` always from one view per image, so the two can be
    reported side by side. Before epoch ``tta_from_epoch`` (1-based) only that one view is
    predicted and ``accuracy`` equals ``plain_accuracy``: predicting 10 views of 10,000 images
    costs about 50 s per epoch here, and early epochs are far from the targets. A target first
    met in such an epoch could have been met earlier with TTA, so its time is an upper bound.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        on_result: Callable | None = None,
        tta: bool = False,
        tta_shift: int = 0,
        tta_from_epoch: int = 1,
    ):
        super().__init__()
        self.tta_from_epoch = tta_from_epoch
        self.views = fmnist_model.tta_views(
            np.asarray(x, dtype=np.float32), tta=tta, tta_shift=tta_shift
        )
        self.y = np.asarray(y)
        self.accuracy: list[float] = []
        self.plain_accuracy: list[float] = []
        self.on_result = on_result

    def on_epoch_end(self, epoch, logs=None):
        views = self.views if epoch + 1 >= self.tta_from_epoch else self.views[:1]
        proba = fmnist_model.view_probabilities(self.model, views)  # each view predicted once
        plain = float((proba[0].argmax(axis=1) == self.y).mean())
        acc = float((proba.mean(axis=0).argmax(axis=1) == self.y).mean())
        self.plain_accuracy.append(plain)
        self.accuracy.append(acc)
        if self.on_result is not None and self.on_result(epoch, acc):
            self.model.stop_training = True
