"""One Fashion-MNIST training run: config -> data -> model -> ``model.fit`` -> test metrics.

The test set is touched once, after training; model selection (early stopping, preset tuning)
sees only the validation split carved from the training images. A run whose loss stops being a
finite number ends at that epoch with one :class:`TrainingDiverged` line, not with metrics
computed from NaN.
"""

from __future__ import annotations

# First, before Keras: checks KERAS_BACKEND and loads TensorFlow quietly (see framework.py).
from cnnlab.fmnist import framework  # noqa: F401

# isort: split
import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cnnlab.data.fashion_mnist import CLASS_NAMES, FashionMNIST, load_fashion_mnist
from cnnlab.data.splits import stratified_split, stratified_subset
from cnnlab.errors import TrainingDiverged
from cnnlab.fmnist import backend
from cnnlab.fmnist.artifacts import write_run
from cnnlab.fmnist.callbacks import CleanTrainAccuracy, EpochClock, RichProgress, StopOnDivergence
from cnnlab.fmnist.config import TrainConfig
from cnnlab.fmnist.model import build_model, predict_proba, tta_views
from cnnlab.fmnist.optim import make_optimizer
from cnnlab.fmnist.result import EpochRecord, TrainMetrics, TrainResult
from cnnlab.metrics import metrics_contract
from cnnlab.runs import run_directory
from cnnlab.tracking import Mlflow, tracked

__all__ = ["Splits", "TrainResult", "compile_model", "fit_inputs", "make_splits", "train"]


@dataclass(frozen=True)
class Splits:
    """Model inputs: float32 (N, 28, 28, 1) raw pixel values, labels as int64 and one-hot."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @staticmethod
    def one_hot(y: np.ndarray) -> np.ndarray:
        return np.eye(len(CLASS_NAMES), dtype=np.float32)[y]


def make_splits(config: TrainConfig, data: FashionMNIST) -> Splits:
    """Seeded stratified validation split (``val_size``), then an optional stratified
    ``train_limit`` subset of the rest. The same seed gives the same images in every run."""
    keep, val = stratified_split(data.y_train, config.val_size, config.seed)
    if config.train_limit is not None:
        keep = keep[stratified_subset(data.y_train[keep], config.train_limit, config.seed)]

    def images(x: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        x = x if index is None else x[index]
        return x.reshape(-1, 28, 28, 1).astype(np.float32)

    return Splits(
        images(data.x_train, keep), data.y_train[keep],
        images(data.x_train, val), data.y_train[val],
        images(data.x_test), np.asarray(data.y_test),
    )  # fmt: skip


def fit_inputs(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int
) -> dict[str, Any]:
    """Keyword arguments of ``model.fit``/``evaluate`` that feed ``x``, ``y`` (one-hot).

    On the TensorFlow backend: a ``tf.data`` pipeline that shuffles indices and gathers each
    batch in one op, on a private one-thread pool with autotuning off. Keras' own adapter for
    NumPy arrays shares TensorFlow's thread pools and autotunes them; on 2 cores that left one
    core idle for long stretches (1,550 vs 2,600 images/s for the same steps; docs/benchmarks.md,
    The input pipeline). Other backends get the arrays (Keras shuffles them each epoch).
    """
    if keras.backend.backend() != "tensorflow":
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": shuffle}
    import tensorflow as tf  # here, not at the top: a torch-backend process never loads it

    images, labels = tf.constant(x), tf.constant(y)
    ds = tf.data.Dataset.range(len(x))
    if shuffle:  # a fresh, seeded order every epoch
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.autotune.enabled = False
    return {"x": ds.prefetch(1).with_options(options), "shuffle": False}  # shuffled above


# Images per call into the compiled training step. Keras runs one Python round trip (callbacks,
# metric bookkeeping, a tf.function call) per execution; at batch 32 that round trip is a large
# share of a step of the small study networks, so several steps run per call. It changes the
# speed only: same updates, same order, same schedule (benchmarks/trainer_speed.py checks the
# final loss matches and measures the gain; docs/benchmarks.md, Steps per execution).
EXECUTION_IMAGES = 256


def steps_per_execution(batch_size: int) -> int:
    """Training steps per call into the compiled step: about ``EXECUTION_IMAGES`` images
    (1 on the torch backend, whose Keras trainer accepts no other value)."""
    if keras.backend.backend() == "torch":
        return 1
    return max(1, EXECUTION_IMAGES // batch_size)


def compile_model(
    config: TrainConfig,
    steps_per_epoch: int,
    *,
    execution_steps: int | None = None,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Build and compile the model of ``config`` (seeds must be set before).

    ``execution_steps``: steps per call (None: :func:`steps_per_execution`); ``jit_compile``
    is Keras' (its "auto" means no XLA on a CPU); both are speed settings, benchmarked in
    benchmarks/trainer_speed.py, and change no result."""
    model = build_model(config)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=execution_steps or steps_per_execution(config.batch_size),
        jit_compile=jit_compile,
    )
    return model


def train(
    config: TrainConfig,
    data: FashionMNIST | None = None,
    *,
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    deterministic: bool = True,
    tensorboard: str | os.PathLike | None = None,
    clean_train_images: int = 0,
    mlflow: Mlflow | None = None,
) -> TrainResult:
    """Train ``config`` and evaluate once on the test set; the result holds the trained model.

    ``out=None`` writes nothing; otherwise ``out`` is claimed first (a second run to it fails
    at once) and the complete run directory appears there only when everything succeeded.
    ``callbacks`` are extra Keras callbacks (run after the clock, so their time is not counted
    as training time). ``tensorboard`` is a folder for TensorBoard logs (fmnist/tensorboard.py).
    ``clean_train_images``: also record ``clean_train_accuracy`` per
    epoch, on that many training images in inference mode (:class:`CleanTrainAccuracy`).
    ``mlflow``: track the run in MLflow (cnnlab/tracking.py); its run starts before the run
    directory is claimed and gets the files once the directory is complete.
    """
    board = None
    if tensorboard is not None:  # checked (and created) before anything else
        from cnnlab.fmnist.tensorboard import TensorBoard

        board = TensorBoard(tensorboard, out=out)
        callbacks = [*callbacks, board]
    tags = {"cnnlab.run_dir": os.path.abspath(out) if out is not None else None,
            "cnnlab.data_dir": data_dir}  # fmt: skip
    name = Path(out).name if out is not None else None
    with tracked(mlflow, "fmnist", run_name=name, params=config.to_dict(), tags=tags) as tracker:
        # Claim the run directory first, so a bad or busy --out fails now, not after training.
        target = run_directory(out, overwrite=overwrite) if out is not None else None
        with target if target is not None else contextlib.nullcontext() as tmp:
            if data is None:
                data = load_fashion_mnist(data_dir, progress=progress)
            log = Path(tmp) / "train.log" if tmp is not None and progress else None
            result, model = _fit(
                config, data, progress, callbacks, deterministic, clean_train_images, log,
                on_epoch=tracker.log_epoch,
            )  # fmt: skip
            if board is not None:
                board.write_mistakes(
                    data.x_test, data.y_test, result.test_proba, len(result.history) - 1
                )
            if tmp is not None:
                write_run(tmp, result, model, data, name=Path(out).name)
        tracker.finish(result.metrics, out, say=print)
    result.model = model
    if out is not None:
        result.out = Path(out)
    return result


def _fit(
    config: TrainConfig,
    data: FashionMNIST,
    progress: bool,
    extra_callbacks: Sequence[keras.callbacks.Callback],
    deterministic: bool,
    clean_train_images: int = 0,
    log: Path | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> tuple[TrainResult, keras.Model]:
    backend.seed_everything(config.seed, deterministic=deterministic)
    s = make_splits(config, data)
    steps = math.ceil(len(s.x_train) / config.batch_size)
    model = compile_model(config, steps)

    clock, divergence = EpochClock(on_epoch), StopOnDivergence()
    callbacks: list[keras.callbacks.Callback] = [clock, divergence]
    if clean_train_images:  # before the clock, which records what it measures
        clean = CleanTrainAccuracy.subset(s.x_train, s.y_train, clean_train_images, config.seed)
        callbacks.insert(0, clean)
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping, restore_best_weights=True
            )
        )
    callbacks.extend(extra_callbacks)
    if progress:
        callbacks.append(RichProgress(f"train {len(s.x_train)} images", log=log))
    train_in = fit_inputs(s.x_train, Splits.one_hot(s.y_train), config.batch_size,
                          shuffle=True, seed=config.seed)  # fmt: skip
    val_in = fit_inputs(s.x_val, Splits.one_hot(s.y_val), 1024, shuffle=False, seed=0)
    model.fit(
        **train_in, epochs=config.epochs, verbose=0, callbacks=callbacks,
        validation_data=val_in["x"] if "y" not in val_in else (val_in["x"], val_in["y"]),
    )  # fmt: skip
    if divergence.epoch is not None:
        raise _diverged(config, f"the training loss became {divergence.loss}", divergence.epoch)

    proba = predict_proba(model, s.x_test, **config.tta_options)
    if not np.isfinite(proba).all():
        raise _diverged(config, "the test predictions are not finite", len(clock.history))
    seconds = clock.train_seconds
    epochs_run = len(clock.history)
    metrics = TrainMetrics(
        **metrics_contract(s.y_test, proba, CLASS_NAMES),
        params=int(model.count_params()),
        train_seconds=seconds,
        images_per_second=len(s.x_train) * epochs_run / seconds if seconds > 0 else None,
        epochs_run=epochs_run,
        train_images=len(s.x_train),
        val_accuracy=clock.history[-1]["val_accuracy"] if clock.history else None,
        best_val_accuracy=max((r["val_accuracy"] or 0.0) for r in clock.history),
        test_time_augmentation=config.tta,
        test_time_views=len(tta_views(s.x_test[:1], **config.tta_options)),
        backend=keras.backend.backend(),
        data_source=data.origin.describe() if data.origin else None,
    )
    return TrainResult(config, clock.history, metrics, proba, seconds), model


def _diverged(config: TrainConfig, what: str, epoch: int) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged: {what} in epoch {epoch} of {config.epochs} (learning rate "
        f"{config.learning_rate:g}, optimizer {config.optimizer}); use a smaller --lr"
    )
