"""Fashion-MNIST commands: train, evaluate, predict (registered on the root app).

Thin: parse flags into a TrainConfig (a preset plus the flags given), call one library
function, print. TensorFlow is imported inside the commands, so ``cnnlab --help`` stays fast
(and quiet: the root command has set its log level by then, see ``cnnlab.cli``). Options with
a fixed set of values are ``Literal`` types: the help lists them, the shell completes them, and
a typo is refused with the list.
"""

from __future__ import annotations

import datetime as dt
import typing
from pathlib import Path
from typing import Any, Literal

import typer

from cnnlab import fmnist, preflight, tracking
from cnnlab.configs import config_options
from cnnlab.fmnist.config import PRESETS, TrainConfig
from cnnlab.runtime import requires

Preset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
Invert = Literal["auto", "yes", "no"]


def choices(values: Any) -> str:
    """The metavar of an option with fixed values, as the config options show theirs."""
    return f"[{'|'.join(typing.get_args(values))}]"


def stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def fmnist_summary(result) -> str:
    m = result.metrics
    return (
        f"test accuracy {m['test_accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}  "
        f"macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}  "
        f"({m['epochs_run']} epochs, {m['train_seconds']:.0f} s, "
        f"{m['images_per_second']:.0f} images/s)"
    )


@requires("keras")
@config_options(TrainConfig, defaults=False)  # a flag left out keeps the preset's value
def train_command(
    preset: Preset = typer.Option(
        "fast", metavar=choices(Preset), help="Starting config; the flags below change it."
    ),
    *,
    config_fields: dict[str, Any],  # one option per TrainConfig field goes here
    data_dir: Path | None = typer.Option(None, help="Folder with the Fashion-MNIST .gz files."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/<preset>-<time>)."),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
    threads: int | None = typer.Option(None, help="CPU threads (default: all cores)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    tensorboard: Path | None = typer.Option(
        None, metavar="DIR", help="Also write TensorBoard logs to DIR (docs/fmnist.md)."
    ),
    mlflow: bool = tracking.MLFLOW_OPTION,
    mlflow_uri: str | None = tracking.MLFLOW_URI_OPTION,
    mlflow_log_model: bool = tracking.MLFLOW_LOG_MODEL_OPTION,
) -> None:
    """Train a CNN on Fashion-MNIST and write a run directory with metrics, plots and report."""
    out = out or Path("runs") / f"{preset}-{stamp()}"
    tracked = tracking.options(mlflow, mlflow_uri, mlflow_log_model)
    preflight.fmnist_train(out, overwrite, data_dir, tensorboard, tracked)  # before TensorFlow
    result = fmnist.train(
        preset, out=out, data_dir=data_dir, progress=progress, overwrite=overwrite,
        threads=threads, tensorboard=tensorboard, mlflow=tracked, **config_fields,
    )  # fmt: skip
    print(fmnist_summary(result))
    print(f"run directory: {out}  (report: {out / 'report.html'})")


@requires("keras")
def evaluate_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cnnlab train`."),
    data_dir: Path | None = typer.Option(None, help="Folder with the Fashion-MNIST .gz files."),
) -> None:
    """Re-evaluate a saved model on the 10,000 test images."""
    preflight.fmnist_run(run_dir, data_dir=data_dir)
    m = fmnist.evaluate(run_dir, data_dir)
    print(
        f"test accuracy {m['test_accuracy']:.4f}  loss {m['test_loss']:.4f}  "
        f"balanced {m['balanced_accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}"
    )
    for row in m["per_class"]:
        print(
            f"  {row['class']:<12} precision {row['precision']:.3f}  recall {row['recall']:.3f}"
            f"  f1 {row['f1']:.3f}  ({row['support']} images)"
        )


@requires("keras")
def predict_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cnnlab train`."),
    images: list[Path] = typer.Argument(..., help="Image files (any size, colour or format)."),
    invert: Invert = typer.Option(
        "auto",
        metavar=choices(Invert),
        help="Fashion-MNIST garments are light on black: invert dark-on-white photos "
        "(auto: when the image border is bright), yes or no.",
    ),
) -> None:
    """Classify image files with a trained model (resized to 28x28 grayscale)."""
    preflight.fmnist_run(run_dir, images=images)
    for row in fmnist.predict(run_dir, images, invert):
        others = ", ".join(f"{name} {prob:.1%}" for name, prob in row["top_k"][1:])
        print(f"{row['path']}: {row['predicted']} ({row['probability']:.1%}; then {others})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("predict")(predict_command)
