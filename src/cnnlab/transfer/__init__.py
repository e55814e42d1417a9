"""Transfer learning with pretrained torchvision CNNs on folder-per-class images.

The Python (notebook) API::

    from cnnlab import transfer

    result = transfer.train(data_dir="data/chest_xray", out="runs/xray", epochs=3, image_size=160)
    result.metrics["balanced_accuracy"], result.metrics["operating_point"]
    result.history                # one row per epoch (history.csv), as fmnist.train gives
    result.model                  # the best checkpoint's torch.nn.Module, in eval mode
    result.checkpoint.class_names
    rows = transfer.predict(result, ["scan1.png", "more_scans/"])  # one dict per image
    transfer.evaluate(result, "data/held_out")                       # metrics on a folder
    transfer.evaluate(["runs/a", "runs/b"], "data/held_out", out="ens", tta=True)  # ensemble

``predict`` and ``evaluate`` take a :class:`TransferResult`, a run directory or a checkpoint
file, or a list of them (an ensemble: the mean of their probabilities). Importing this
package loads no framework: torch is imported by the first call, so ``cnnlab.transfer`` and
``cnnlab.fmnist`` can be imported side by side; only call one of them per process
(TensorFlow and torchvision crash when both are loaded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cnnlab.errors import CnnlabError
from cnnlab.transfer.config import TransferConfig

if TYPE_CHECKING:
    from torch import nn

    from cnnlab.tracking import Mlflow
    from cnnlab.transfer.checkpoint import Checkpoint
    from cnnlab.transfer.evaluation.shift import ShiftReport
    from cnnlab.transfer.results import (
        CrossValMetrics,
        EvaluationMetrics,
        FoldMetrics,
        HistoryRow,
        RunMetrics,
    )

__all__ = ["TransferConfig", "TransferResult", "evaluate", "load", "predict", "shift", "train"]

Device = Literal["auto", "cpu", "cuda", "mps"]


@dataclass
class TransferResult:
    """What :func:`train` returns, as ``fmnist.train`` does: the model, its metrics, the
    per-epoch history, and the run directory.

    A ``folds=K`` run trains K models and keeps none to deploy: ``checkpoint`` and ``model``
    are None, ``history`` is empty (each fold's is in ``fold_k/history.csv``), ``metrics`` are
    the means over folds and ``folds`` each fold's metrics."""

    out: Path  # the run directory: best.pt, last.pt, metrics.json, report.html, ...
    metrics: RunMetrics | CrossValMetrics  # of metrics.json: on the test split if there is
    # one, else validation; with folds, the means over folds
    checkpoint: Checkpoint | None = field(repr=False)  # best.pt: classes, threshold, ...
    model: nn.Module | None = field(repr=False)  # the best epoch's network, eval mode, CPU
    history: list[HistoryRow] = field(default_factory=list, repr=False)  # one row per epoch run
    folds: list[FoldMetrics] = field(default_factory=list)  # a folds=K run: one per fold


def train(
    config: TransferConfig | None = None,
    *,
    out: str | os.PathLike,
    data_dir: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = True,
    threads: int | None = None,
    tensorboard: str | os.PathLike | None = None,
    mlflow: Mlflow | str | os.PathLike | bool | None = None,
    **fields: Any,
) -> TransferResult:
    """Fine-tune on ``data_dir`` (one folder per class, or train/ (+ val/, test/)) and write the
    run directory ``out``; ``config`` (default :class:`TransferConfig`) with the config
    ``fields`` given changed (``epochs=3``, ``arch="efficientnet_b0"``, ...). The arguments are
    ``fmnist.train``'s: ``progress=False`` prints nothing but errors, ``threads`` sets the
    config's torch CPU threads; ``mlflow``: track the run in MLflow (True: the ``mlruns``
    folder; or a folder, a tracking URI, a ``tracking.Mlflow``)."""
    if not isinstance(config, TransferConfig | None):  # the old order put the images first
        raise CnnlabError("transfer.train takes a TransferConfig; name the images data_dir=")
    if threads is not None:
        fields["threads"] = threads
    base = config if config is not None else TransferConfig()
    resolved = TransferConfig.from_dict({**base.to_dict(), **fields})  # checked before torch
    from cnnlab.tracking import check, setting

    tracked = setting(mlflow)
    check(tracked, out, {"the data folder": data_dir})  # before torch loads
    from cnnlab.console import make_console
    from cnnlab.transfer.pipeline import train as run
    from cnnlab.transfer.results import read_history

    run_dir, metrics = run(
        data_dir, out, resolved, overwrite=overwrite, console=make_console(not progress),
        tensorboard=tensorboard, mlflow=tracked,
    )  # fmt: skip
    if metrics is None:  # a torchrun process other than rank 0: rank 0 writes the run
        return TransferResult(run_dir, metrics, None, None)  # type: ignore[arg-type]
    if resolved.folds:  # cross-validation writes no best.pt: there is no one model
        return TransferResult(run_dir, metrics, None, None, folds=list(metrics["per_fold"]))
    checkpoint = load(run_dir)
    history = read_history(run_dir / "history.csv")
    return TransferResult(run_dir, metrics, checkpoint, checkpoint.build_model(), history)


def load(source: TransferResult | str | os.PathLike) -> Checkpoint:
    """The checkpoint of a run directory (its ``best.pt``) or checkpoint file; no pickle runs.
    ``.build_model()`` gives the network, ``.class_names`` its outputs."""
    from cnnlab.transfer.checkpoint import load as read

    return read(_path(source))


Source = TransferResult | str | os.PathLike


def predict(
    source: Source | Sequence[Source],
    images: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    cam: str | os.PathLike | None = None,
    top_k: int = 3,
    device: Device = "auto",
    max_pixels: int | None = None,
    engine: str = "auto",
    overwrite: bool = False,
    tta: bool = False,
    adapt_bn: str | os.PathLike | None = None,
    threshold_policy: str | None = None,
) -> list[dict[str, Any]]:
    """One row per image file (folders are searched), as ``fmnist.predict`` gives
    (:mod:`cnnlab.predictions`): ``predicted``, ``probability``, ``p_<class>`` for every class,
    ``top_k`` pairs, and for two classes ``predicted_at_threshold`` and ``decision``. An
    unreadable file is a row with its ``error``. ``out``: also a CSV; ``cam``: Grad-CAM
    overlays there (existing files are replaced only with ``overwrite``); ``max_pixels``,
    ``engine``, ``tta``, ``adapt_bn`` (a folder) and ``threshold_policy`` as the command's
    flags (docs/transfer.md)."""
    from cnnlab.transfer.inference.predict import predict as run

    if isinstance(images, (str, os.PathLike)):
        images = [images]
    rows, _ = run(
        _paths(source), images, out, cam, top_k, device, max_pixels=max_pixels, engine=engine,
        overwrite=overwrite, tta=tta, adapt_bn=adapt_bn, threshold_policy=threshold_policy,
    )  # fmt: skip
    return rows


def evaluate(
    source: Source | Sequence[Source],
    data_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    device: Device = "auto",
    overwrite: bool = False,
    max_pixels: int | None = None,
    engine: str = "auto",
    tta: bool = False,
    adapt_bn: str | os.PathLike | None = None,
    threshold_policy: str | None = None,
) -> EvaluationMetrics:
    """Metrics of the best checkpoint (or of several runs' mean) on a held-out folder of class
    folders; also written, with predictions and plots, to ``out`` (default
    ``RUN_DIR/evaluations/<folder name>``; an ensemble needs ``out``)."""
    from cnnlab.transfer.evaluation.evaluate import evaluate as run

    metrics, _ = run(
        _paths(source), data_dir, out, device, overwrite, max_pixels, engine=engine, tta=tta,
        adapt_bn=adapt_bn, threshold_policy=threshold_policy,
    )  # fmt: skip
    return metrics


def shift(
    data_dir: str | os.PathLike,
    *,
    test: str | os.PathLike | None = None,
    image_size: int = 224,
    group_regex: str | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    json_out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ShiftReport:
    """The site-shift probe (``cnnlab.transfer.evaluation.shift``): can four whole-image
    statistics predict the class, and does the test folder differ from the training one?
    Prints the Markdown; also writes it to ``out`` and the numbers to ``json_out``."""
    from cnnlab import preflight
    from cnnlab.files import atomic_write_text
    from cnnlab.transfer.evaluation.shift import probe, to_markdown

    preflight.transfer_shift(data_dir, test, [("--out", out), ("--json", json_out)], overwrite)
    report, train_dir, test_dir = probe(data_dir, test, image_size, group_regex, seed)
    text = to_markdown(report, train_dir, test_dir)
    print(text, end="")
    if out is not None:
        atomic_write_text(Path(out), text, overwrite)
    if json_out is not None:
        import json

        atomic_write_text(Path(json_out), json.dumps(report.as_dict(), indent=2) + "\n", overwrite)
    return report


def _path(source: Source) -> Path:
    return source.out if isinstance(source, TransferResult) else Path(source)


def _paths(source: Source | Sequence[Source]) -> Path | list[Path]:
    """One path, or a list of them for an ensemble (a str is one path, not a sequence)."""
    if isinstance(source, TransferResult | str | os.PathLike):
        return _path(source)
    return [_path(s) for s in source]
