"""What a worker runs for one trial: the real Fashion-MNIST trainer, data loaded once per worker.

A trainer factory returns ``run(config) -> outcome`` where ``outcome`` holds ``history``,
``metrics`` (the ``metrics.json`` contract), ``test_pred`` (predicted class per test image),
``test_labels`` and ``train_seconds``. Tests inject a fake factory through the same interface.

Every history row also holds ``clean_train_accuracy``: accuracy on as many of the trial's own
training images as its validation split holds (at most ``CLEAN_TRAIN_IMAGES``), in inference
mode, so the generalization gap compares like with like at the same precision.

A trial whose loss becomes NaN is a result, not a failure: a learning-rate sweep that
brackets its optimum tries rates that diverge, and a study must be able to say "this diverged"
(at chance accuracy) rather than stop with a failed trial that every re-run fails again.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import TrainConfig

Trainer = Callable[[TrainConfig], dict[str, Any]]
DEFAULT_TRAINER = "cnnlab.study.trial:keras_trainer"
CLEAN_TRAIN_IMAGES = 5_000  # about 3% of an epoch's cost on the full training set


def clean_images(config: TrainConfig) -> int:
    return min(config.val_size, CLEAN_TRAIN_IMAGES)


def keras_trainer(data_dir: str | None = None) -> Trainer:
    """Trains with ``cnnlab.fmnist.training.train``; the verified data set is parsed once."""
    from cnnlab.runtime import import_tensorflow, require_supported_backend

    if require_supported_backend() == "tensorflow":  # quietly, before Keras imports it
        import_tensorflow()
    import keras

    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.errors import TrainingDiverged
    from cnnlab.fmnist.callbacks import EpochClock
    from cnnlab.fmnist.training import train

    data = load_fashion_mnist(data_dir, progress=False)

    def run(config: TrainConfig) -> dict[str, Any]:
        keras.backend.clear_session()  # one worker trains many models: free the old graphs
        start = time.perf_counter()
        recorder = EpochClock()  # keeps the history and the model should training diverge
        try:
            result = train(config, data, progress=False, callbacks=[recorder],
                           clean_train_images=clean_images(config))  # fmt: skip
        except TrainingDiverged:
            return diverged_outcome(recorder, data.x_test, data.y_test, start)
        return {
            "history": result.history,
            "metrics": {k: v for k, v in result.metrics.items()},
            "test_pred": result.test_proba.argmax(axis=1),
            "test_labels": data.y_test,
            "train_seconds": float(result.train_seconds),
            "call_seconds": time.perf_counter() - start,
        }

    return run


def diverged_outcome(recorder, x_test, y_test, start: float) -> dict[str, Any]:
    """The outcome of a trial whose loss became NaN: what its network predicts (NaN
    probabilities: the first class for every image), with ``diverged`` set in its metrics."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    model, history = recorder.model, recorder.history
    proba = model.predict(np.asarray(x_test, np.float32).reshape(-1, 28, 28, 1), verbose=0)
    pred = np.nan_to_num(np.asarray(proba), nan=-1.0).argmax(axis=1)
    y = np.asarray(y_test)
    seconds = recorder.train_seconds
    metrics = {
        "test_accuracy": float((pred == y).mean()), "test_loss": None,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)), "ece": None,
        "params": int(model.count_params()), "train_seconds": seconds,
        "epochs_run": len(history), "diverged": True,
    }  # fmt: skip
    return {
        "history": history, "metrics": metrics, "test_pred": pred, "test_labels": y,
        "train_seconds": seconds, "call_seconds": time.perf_counter() - start,
    }  # fmt: skip


def load_trainer(spec: str, data_dir: str | None = None) -> Trainer:
    """``"package.module:factory"`` -> the trainer that factory builds."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr or "trainer")
    except (ImportError, AttributeError) as e:
        raise CnnlabError(f"cannot load trainer {spec!r}: {e}") from None
    return factory(data_dir)
