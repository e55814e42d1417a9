"""Transfer learning with pretrained torchvision CNNs on folder-per-class images.

The Python (notebook) API::

    from cnnlab import transfer

    result = transfer.train("data/chest_xray", "runs/xray", epochs=3, image_size=160)
    result.metrics["balanced_accuracy"], result.metrics["operating_point"]
    result.model                  # the best checkpoint's torch.nn.Module, in eval mode
    result.checkpoint.class_names
    rows = transfer.predict(result, ["scan1.png", "more_scans/"])  # one dict per image
    transfer.evaluate(result, "data/held_out")                       # metrics on a folder

``predict`` and ``evaluate`` take a :class:`TransferResult`, a run directory or a checkpoint
file. Importing this package loads no framework: torch is imported by the first call, so
``cnnlab.transfer`` and ``cnnlab.fmnist`` can be imported side by side; only call one of them
per process (TensorFlow and torchvision crash when both are loaded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cnnlab.entry_points import keep_entry_points
from cnnlab.transfer.config import TransferConfig

if TYPE_CHECKING:
    from torch import nn

    from cnnlab.transfer.checkpoint import Checkpoint
    from cnnlab.transfer.results import EvaluationMetrics, RunMetrics

__all__ = ["TransferConfig", "TransferResult", "evaluate", "load", "predict", "train"]

Device = Literal["auto", "cpu", "cuda", "mps"]


@dataclass
class TransferResult:
    """What :func:`train` returns: the run directory, its metrics and its best model."""

    out: Path  # the run directory: best.pt, last.pt, metrics.json, report.html, ...
    metrics: RunMetrics  # of metrics.json: on the test split if there is one, else validation
    checkpoint: Checkpoint = field(repr=False)  # best.pt: class names, threshold, preprocessing
    model: nn.Module = field(repr=False)  # the best epoch's network, in eval mode, on the CPU


def train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    config: TransferConfig | None = None,
    *,
    overwrite: bool = False,
    quiet: bool = False,
    **fields: Any,
) -> TransferResult:
    """Fine-tune on ``data_dir`` (one folder per class, or train/ (+ val/, test/)) and write the
    run directory ``out``; ``config`` (default :class:`TransferConfig`) with the config
    ``fields`` given changed (``epochs=3``, ``arch="efficientnet_b0"``, ...)."""
    base = config if config is not None else TransferConfig()
    resolved = TransferConfig.from_dict({**base.to_dict(), **fields})  # checked before torch
    from cnnlab.console import make_console
    from cnnlab.transfer.train import train as run

    run_dir, metrics = run(
        data_dir, out, resolved, overwrite=overwrite, console=make_console(quiet)
    )
    checkpoint = load(run_dir)
    return TransferResult(run_dir, metrics, checkpoint, checkpoint.build_model())


def load(source: TransferResult | str | os.PathLike) -> Checkpoint:
    """The checkpoint of a run directory (its ``best.pt``) or checkpoint file; no pickle runs.
    ``.build_model()`` gives the network, ``.class_names`` its outputs."""
    from cnnlab.transfer.checkpoint import load as read

    return read(_path(source))


def predict(
    source: TransferResult | str | os.PathLike,
    images: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    cam: str | os.PathLike | None = None,
    top_k: int = 3,
    device: Device = "auto",
) -> list[dict[str, Any]]:
    """One row per image file (folders are searched): ``predicted``, ``probability``, ``p_<class>``
    for every class, ``top_k``, and for two classes ``predicted_at_threshold``. An unreadable
    file is a row with its ``error``. ``out``: also a CSV; ``cam``: Grad-CAM overlays there."""
    from cnnlab.transfer.inference.predict import predict as run

    if isinstance(images, (str, os.PathLike)):
        images = [images]
    rows, _ = run(_path(source), images, out, cam, top_k, device)
    return rows


def evaluate(
    source: TransferResult | str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    device: Device = "auto",
    overwrite: bool = False,
) -> EvaluationMetrics:
    """Metrics of the best checkpoint on a held-out folder of class folders; also written, with
    predictions and plots, to ``out`` (default ``RUN_DIR/evaluations/<folder name>``)."""
    from cnnlab.transfer.inference.predict import evaluate as run

    metrics, _ = run(_path(source), data_dir, out, device, overwrite)
    return metrics


def _path(source: TransferResult | str | os.PathLike) -> Path:
    return source.out if isinstance(source, TransferResult) else Path(source)


keep_entry_points(__name__)  # ``train`` and ``predict`` are submodules too
