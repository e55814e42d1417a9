"""Fashion-MNIST CNNs with Keras 3: config -> model -> train -> evaluate -> run directory.

The Python (notebook) API::

    from cnnlab import fmnist

    result = fmnist.train("fast", epochs=3, train_limit=10_000)  # a preset, fields changed
    result.metrics["test_accuracy"], result.history              # test metrics, per-epoch rows
    result.model                                                 # the trained keras.Model
    fmnist.predict(result, ["shirt.jpg"])   # image files -> the three likeliest classes
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

import numpy as np

from cnnlab.entry_points import keep_entry_points
from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import PRESETS, TrainConfig, preset
from cnnlab.fmnist.result import TrainResult

if TYPE_CHECKING:
    import keras

    from cnnlab.fmnist.evaluate import Prediction

    Source = TrainResult | str | os.PathLike | keras.Model

__all__ = [
    "PRESETS", "TrainConfig", "TrainResult", "evaluate", "load_model", "predict",
    "predict_proba", "preset", "train",
]  # fmt: skip


def train(
    config: TrainConfig | str = "fast",
    *,
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **fields: Any,
) -> TrainResult:
    """Train a preset (``"tutorial"``, ``"fast"``, ``"strong"``) or a :class:`TrainConfig`, with
    the config ``fields`` given changed (``epochs=3``, ``filters=(32, 64)``, ...).

    Returns the :class:`TrainResult`: ``model`` (the trained ``keras.Model``), ``metrics``
    (measured once on the 10,000 test images), ``history``, ``config``. With ``out``, the run
    directory is written there too (config, history, metrics, ``model.keras``, plots, report).
    """
    base = preset(config) if isinstance(config, str) else config
    resolved = TrainConfig.from_dict({**base.to_dict(), **fields})  # checked before TensorFlow
    from cnnlab.fmnist.train import train as run

    return run(resolved, out=out, data_dir=data_dir, progress=progress, overwrite=overwrite)


def load_model(run_dir: str | os.PathLike) -> keras.Model:
    """The ``model.keras`` of a run directory (loaded safely; a bad file is one CnnlabError)."""
    from cnnlab.fmnist.evaluate import load_model as load

    return load(run_dir)


def predict_proba(source: Source, x: Any) -> np.ndarray:
    """Class probabilities (N, 10) of raw images ``x`` (N, 28, 28) or (N, 28, 28, 1), pixel
    values 0..255 as in Fashion-MNIST, with the test-time augmentation of the run or result."""
    from cnnlab.fmnist.model import predict_proba as probabilities

    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:] != (28, 28, 1):
        raise CnnlabError(f"images must be (N, 28, 28) or (N, 28, 28, 1), got {x.shape}")
    model, tta = _model_and_tta(source)
    return probabilities(model, x, **tta)


def predict(
    source: Source,
    images: Sequence[str | os.PathLike],
    invert: Literal["auto", "yes", "no"] = "auto",
) -> list[Prediction]:
    """The three likeliest classes of each image file, as ``cnnlab predict`` prints them
    (any size, colour or format; ``invert`` as there). All files are read first."""
    from cnnlab.data.fashion_mnist import CLASS_NAMES
    from cnnlab.fmnist.evaluate import Prediction, load_image

    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if not images:
        raise CnnlabError("no image files given")
    proba = predict_proba(source, np.stack([load_image(p, invert) for p in images]))
    out = []
    for path, p in zip(images, proba, strict=True):
        top = [(CLASS_NAMES[k], float(p[k])) for k in np.argsort(-p)[:3]]
        out.append(Prediction(str(path), top[0][0], top[0][1], top))
    return out


def evaluate(source: Source, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Metrics on the 10,000 test images: the keys of ``metrics.json``'s test metrics
    (``test_accuracy``, ``balanced_accuracy``, ``macro_f1``, ``ece``, ``per_class``, ...)."""
    from cnnlab.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
    from cnnlab.metrics import metrics_contract

    data = load_fashion_mnist(data_dir, progress=False)
    return metrics_contract(data.y_test, predict_proba(source, data.x_test), CLASS_NAMES)


def _model_and_tta(source: Source) -> tuple[keras.Model, dict]:
    """The model of ``source`` and the test-time augmentation it is evaluated with."""
    if isinstance(source, TrainResult):
        if source.model is None:
            raise CnnlabError("this TrainResult holds no model")
        return source.model, source.config.tta_options
    if isinstance(source, (str, os.PathLike)):
        from cnnlab.fmnist.evaluate import run_tta

        return load_model(source), run_tta(source)
    return source, {}  # a keras.Model: one view of each image


keep_entry_points(__name__)  # ``train`` and ``evaluate`` are submodules too
