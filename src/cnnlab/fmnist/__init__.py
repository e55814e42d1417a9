"""Fashion-MNIST CNNs with Keras 3: config -> model -> train -> evaluate -> run directory.

The Python (notebook) API::

    from cnnlab import fmnist

    result = fmnist.train("fast", epochs=3, train_limit=10_000)  # a preset, fields changed
    result.metrics["test_accuracy"], result.history              # test metrics, per-epoch rows
    result.model                                                 # the trained keras.Model
    fmnist.predict(result, ["shirt.jpg"])   # image files -> one row each (cnnlab.predictions)
    fmnist.predict_proba(result, x)         # raw pixels (N, 28, 28) in 0..255 -> (N, 10)
    fmnist.evaluate(result)                 # test-set metrics again (same keys)

    result = fmnist.train("strong", out="runs/strong")  # also writes a run directory
    fmnist.evaluate("runs/strong")                     # a run directory works everywhere
    model = keras.saving.load_model("runs/strong/model.keras")  # no cnnlab needed for that

``train``, ``evaluate``, ``predict`` and ``predict_proba`` accept a :class:`TrainResult`, a run
directory or a ``keras.Model`` (evaluated plainly: a run or result also brings its test-time
augmentation). Importing this package loads no framework: TensorFlow is imported by the first
call, so ``cnnlab.fmnist`` and ``cnnlab.transfer`` can be imported side by side; only call one
of them per process (TensorFlow and torchvision crash when both are loaded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from cnnlab.fmnist.config import PRESETS, TrainConfig, preset, resolve_config
from cnnlab.runtime import quiet_logs_by_default

if TYPE_CHECKING:
    import keras
    import numpy as np

    from cnnlab.fmnist.result import TrainResult
    from cnnlab.tracking import Mlflow

    Source = TrainResult | str | os.PathLike | keras.Model

__all__ = [
    "PRESETS", "TrainConfig", "TrainResult", "evaluate", "load_model", "predict",
    "predict_proba", "preset", "resolve_config", "train",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    # TrainResult brings the metrics module and scikit-learn (a second on a small machine):
    # imported on first use, so the command line starts without them (issue 26)
    if name == "TrainResult":
        from cnnlab.fmnist.result import TrainResult

        return TrainResult
    raise AttributeError(f"module 'cnnlab.fmnist' has no attribute {name!r}")


# Each function imports its module when called (they load TensorFlow); the command line calls
# these same functions.


def train(
    config: TrainConfig | str = "fast",
    *,
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    threads: int | None = None,
    tensorboard: str | os.PathLike | None = None,
    mlflow: Mlflow | str | os.PathLike | bool | None = None,
    **fields: Any,
) -> TrainResult:
    """Train a preset (``"tutorial"``, ``"fast"``, ``"strong"``) or a :class:`TrainConfig`, with
    the config ``fields`` given changed (``epochs=3``, ``filters=(32, 64)``, ...; None leaves a
    field as it is).

    Returns the :class:`TrainResult`: ``model`` (the trained ``keras.Model``), ``metrics``
    (measured once on the 10,000 test images), ``history``, ``config``. With ``out``, the run
    directory is written there too (config, history, metrics, ``model.keras``, plots, report).
    ``threads``: CPU threads for the math (default: all cores). ``mlflow``: track the run in
    MLflow (True: the ``mlruns`` folder; or a folder, a tracking URI, a ``tracking.Mlflow``).
    """
    quiet_logs_by_default()  # before anything loads TensorFlow
    resolved = resolve_config(config, **fields)  # checked before TensorFlow is imported
    from cnnlab.tracking import check, setting

    tracked = setting(mlflow)
    check(tracked, out)  # MLflow installed, its folder writable: before TensorFlow loads
    from cnnlab.runtime import configure_threads

    configure_threads(threads)  # before TensorFlow starts its pools
    from cnnlab.fmnist.training import train as run

    return run(
        resolved, out=out, data_dir=data_dir, progress=progress, overwrite=overwrite,
        tensorboard=tensorboard, mlflow=tracked,
    )  # fmt: skip


def load_model(run_dir: str | os.PathLike) -> keras.Model:
    """The ``model.keras`` of a run directory (loaded safely; a bad file is one CnnlabError)."""
    quiet_logs_by_default()  # before anything loads TensorFlow
    from cnnlab.fmnist.inference import load_model as load

    return load(run_dir)


def predict_proba(source: Source, x: Any) -> np.ndarray:
    """Class probabilities (N, 10) of raw images ``x`` (N, 28, 28) or (N, 28, 28, 1), pixel
    values 0..255 as in Fashion-MNIST, with the test-time augmentation of the run or result."""
    quiet_logs_by_default()  # before anything loads TensorFlow
    from cnnlab.fmnist.inference import probabilities

    return probabilities(source, x)


def predict(
    source: Source,
    images: Sequence[str | os.PathLike],
    invert: Literal["auto", "yes", "no"] = "auto",
    top_k: int = 3,
) -> list[dict[str, Any]]:
    """One row per image file, as ``transfer.predict`` gives (:mod:`cnnlab.predictions`):
    ``predicted``, ``probability``, ``p_<class>``, ``top_k`` pairs. Any size, colour or format;
    ``invert`` as ``cnnlab predict --invert``. All files are read first."""
    quiet_logs_by_default()  # before anything loads TensorFlow
    from cnnlab.fmnist.inference import predict as run

    return run(source, images, invert, top_k)


def evaluate(source: Source, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Metrics on the 10,000 test images: the keys of ``metrics.json``'s test metrics
    (``test_accuracy``, ``balanced_accuracy``, ``macro_f1``, ``ece``, ``per_class``, ...)."""
    quiet_logs_by_default()  # before anything loads TensorFlow
    from cnnlab.fmnist.inference import evaluate as run

    return run(source, data_dir)
