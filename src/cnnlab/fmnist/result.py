"""What one Fashion-MNIST training run returns: typed history rows, metrics and the result.

``TrainMetrics`` is the ``metrics.json`` document of a run: the shared classification metrics
of :func:`cnnlab.metrics.metrics_contract` plus what this pipeline measures. Both are
``TypedDict``s, so they stay plain dicts (JSON, the study engine's storage) with named keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

import numpy as np

from cnnlab.fmnist.config import TrainConfig
from cnnlab.metrics import ContractMetrics

if TYPE_CHECKING:
    import keras


class EpochRecord(TypedDict):
    """One row of ``history.csv``."""

    epoch: int  # 1-based
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    lr: float  # at the end of the epoch (schedules evaluated at that step)
    seconds: float  # training only: validation excluded
    # on training images in inference mode (train(clean_train_images=...) only)
    clean_train_accuracy: NotRequired[float]


class TrainMetrics(ContractMetrics):
    """The ``metrics.json`` of a Fashion-MNIST run (test metrics from the test set, once)."""

    params: int
    train_seconds: float
    images_per_second: float | None
    epochs_run: int
    train_images: int
    val_accuracy: float | None  # of the last epoch
    best_val_accuracy: float
    test_time_augmentation: bool
    test_time_views: int
    backend: str  # the Keras backend
    data_source: str | None  # where the verified data set was read (None: given by a caller)


@dataclass
class TrainResult:
    """What :func:`cnnlab.fmnist.training.train` returns: the trained model and its measurements.

    ``model`` takes raw pixel values (N, 28, 28, 1) in 0..255 and returns class probabilities;
    :func:`cnnlab.fmnist.model.predict_proba` adds the run's test-time augmentation
    (``config.tta_options``), as the test metrics did.
    """

    config: TrainConfig
    history: list[EpochRecord]
    metrics: TrainMetrics
    test_proba: np.ndarray  # (10000, 10) float32 class probabilities on the test set
    train_seconds: float  # training only: validation and test evaluation excluded
    out: Path | None = None  # the run directory, when one was written
    # the trained model (with early stopping: the weights of its best epoch)
    model: keras.Model | None = field(default=None, repr=False)
