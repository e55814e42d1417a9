"""What a worker runs for one trial: the real Fashion-MNIST trainer, data loaded once per worker.

A trainer factory returns ``run(config) -> outcome`` where ``outcome`` holds ``history``,
``metrics`` (the ``metrics.json`` contract), ``test_pred`` (predicted class per test image),
``test_labels`` and ``train_seconds``. Tests inject a fake factory through the same interface.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import TrainConfig

Trainer = Callable[[TrainConfig], dict[str, Any]]
DEFAULT_TRAINER = "cnnlab.study.trial:keras_trainer"


def keras_trainer(data_dir: str | None = None) -> Trainer:
    """Trains with ``cnnlab.fmnist.train.train``; the verified data set is parsed once."""
    import keras

    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.fmnist.train import train

    data = load_fashion_mnist(data_dir, progress=False)

    def run(config: TrainConfig) -> dict[str, Any]:
        keras.backend.clear_session()  # one worker trains many models: free the old graphs
        start = time.perf_counter()
        result = train(config, data, progress=False)
        return {
            "history": result.history,
            "metrics": {k: v for k, v in result.metrics.items()},
            "test_pred": result.test_proba.argmax(axis=1),
            "test_labels": data.y_test,
            "train_seconds": float(result.train_seconds),
            "call_seconds": time.perf_counter() - start,
        }

    return run


def load_trainer(spec: str, data_dir: str | None = None) -> Trainer:
    """``"package.module:factory"`` -> the trainer that factory builds."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr or "trainer")
    except (ImportError, AttributeError) as e:
        raise CnnlabError(f"cannot load trainer {spec!r}: {e}") from None
    return factory(data_dir)
