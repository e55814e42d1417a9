"""What a finished run leaves on disk: config, history, metrics, model, plots and a report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import __version__, plots
from cnnlab.data.fashion_mnist import CLASS_NAMES, DataOrigin, FashionMNIST
from cnnlab.files import read_json, write_csv, write_json
from cnnlab.fmnist.config import TrainConfig
from cnnlab.fmnist.model import describe_tta
from cnnlab.fmnist.optim import is_builtin_schedule
from cnnlab.machine import environment_info
from cnnlab.report import Report

if TYPE_CHECKING:
    import keras

    from cnnlab.fmnist.result import TrainResult

MISCLASSIFIED_SHOWN = 32


def run_config(config: TrainConfig, backend: str, data: DataOrigin | None = None) -> dict[str, Any]:
    """The ``config.json`` document: the resolved config plus what is needed to reproduce it,
    the data set's folder and checksums included (None: arrays given by a caller)."""
    return {
        "config": config.to_dict(),
        "resolved": {
            "learning_rate": config.learning_rate,
            "weight_decay": config.decoupled_weight_decay,
        },
        "seed": config.seed,
        "backend": backend,
        "data": data.to_dict() if data else None,
        "cnnlab_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment_info(),
    }


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run was trained with (from its ``config.json``)."""
    doc = read_json(Path(run_dir) / "config.json", "run config")
    return TrainConfig.from_dict(doc["config"])


def write_run(
    out: Path, result: TrainResult, model: keras.Model, data: FashionMNIST, name: str | None = None
) -> None:
    """Fill the (temporary) run directory ``out``; ``name`` is the run's final name."""
    metrics = result.metrics
    write_json(out / "config.json", run_config(result.config, metrics["backend"], data.origin))
    write_csv(out / "history.csv", result.history)
    write_json(out / "metrics.json", metrics)
    save_model(model, out / "model.keras")
    figures = write_plots(out, result, data)
    write_report(out, result, figures, name or out.name)


def save_model(model: keras.Model, path: Path) -> None:
    """Write ``model`` as a ``.keras`` file that plain ``keras.saving.load_model`` opens, in a
    process that never imports cnnlab, optimizer state included.

    A cnnlab schedule (one-cycle) would make Keras fail there ("Could not locate class
    'OneCycle'"). Such a model is saved as a copy whose optimizer keeps the rate the schedule
    has reached, as a constant Keras schedule: a run that trained to its last step continues
    exactly as the original would, since the schedule stays at its final value from there on.
    """
    if model.optimizer is not None and not is_builtin_schedule(model.optimizer):
        model = _with_rate_frozen(model)
    model.save(path)


def _with_rate_frozen(model: keras.Model) -> keras.Model:
    import keras

    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    # A schedule, not a float: a float rate adds an optimizer variable, and Keras matches saved
    # optimizer variables by position. ExponentialDecay with decay_rate 1 is a constant.
    constant = keras.optimizers.schedules.ExponentialDecay(rate, decay_steps=1, decay_rate=1.0)
    compile_config = model.get_compile_config()
    compile_config["optimizer"]["config"]["learning_rate"] = keras.saving.serialize_keras_object(
        constant
    )
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.compile_from_config(compile_config)  # builds the optimizer for the copy's variables
    for mine, trained in zip(copy.optimizer.variables, model.optimizer.variables, strict=True):
        mine.assign(trained)
    return copy


def write_plots(out: Path, result: TrainResult, data: FashionMNIST) -> dict[str, Path]:
    y_test = np.asarray(data.y_test)
    pred = result.test_proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_test)
    # the most confident mistakes teach the most about what the network confuses
    wrong = wrong[np.argsort(-result.test_proba[wrong, pred[wrong]])][:MISCLASSIFIED_SHOWN]
    titles = [
        f"true {CLASS_NAMES[y_test[i]]}\npred {CLASS_NAMES[pred[i]]} "
        f"({result.test_proba[i, pred[i]]:.0%})"
        for i in wrong
    ]
    return {
        "learning_curves": plots.learning_curves(result.history, out / "learning_curves.png"),
        "confusion_matrix": plots.confusion_matrix(
            result.metrics["confusion_matrix"], CLASS_NAMES, out / "confusion_matrix.png"
        ),
        "misclassified": plots.image_grid(
            [data.x_test[i] for i in wrong], titles, out / "misclassified.png"
        ),
    }


def write_report(out: Path, result: TrainResult, figures: dict[str, Path], name: str) -> None:
    m, c = result.metrics, result.config
    report = Report(f"Fashion-MNIST run: {name}")
    report.paragraph(
        f"Test accuracy {m['test_accuracy']:.2%} (balanced {m['balanced_accuracy']:.2%}, "
        f"macro F1 {m['macro_f1']:.3f}) after {m['epochs_run']} epochs and "
        f"{m['train_seconds']:.0f} s of training ({m['images_per_second']:.0f} images/s) "
        f"on the {m['backend']} backend"
        + (f" ({describe_tta(c.tta, c.tta_shift)})." if c.tta else "."),
        css_class="conclusion",
    )
    report.paragraph(
        f"Data: Fashion-MNIST from {m['data_source'] or 'arrays given by the caller'}."
    )
    report.heading("Summary")
    report.table(
        [
            {"metric": "test accuracy", "value": m["test_accuracy"]},
            {"metric": "test loss", "value": m["test_loss"]},
            {"metric": "balanced accuracy", "value": m["balanced_accuracy"]},
            {"metric": "macro F1", "value": m["macro_f1"]},
            {"metric": "expected calibration error", "value": m["ece"]},
            {"metric": "final validation accuracy", "value": m["val_accuracy"]},
            {"metric": "parameters", "value": m["params"]},
            {"metric": "training images", "value": m["train_images"]},
            {"metric": "training seconds", "value": m["train_seconds"]},
            {"metric": "images per second", "value": m["images_per_second"]},
        ]
    )
    report.heading("Learning curves")
    report.image(figures["learning_curves"], "Loss and accuracy per epoch (train vs validation)")
    report.heading("Errors")
    report.image(figures["confusion_matrix"], "Confusion matrix on the 10,000 test images")
    report.table(m["per_class"], ["class", "precision", "recall", "f1", "support"])
    report.image(figures["misclassified"], "The most confident mistakes on the test set")
    report.heading("Configuration")
    report.table([{"field": k, "value": str(v)} for k, v in c.to_dict().items()])
    report.write(out)
