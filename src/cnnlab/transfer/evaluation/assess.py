"""After fitting: calibration, the operating threshold, and held-out metrics with intervals.

``assess`` keeps the held-out split out of every choice. On the validation split, the one
that already chose the best epoch, it fits the temperature (``--calibrate``) and picks the
two-class threshold; only then is the held-out split measured, with bootstrap intervals
(``cnnlab.bootstrap``). ``write_outcome`` saves what a run directory holds of it.

The temperature is folded into the classifier head (weights and bias divided by T), so the
saved checkpoint *is* the calibrated model: ``predict``, ``evaluate``, the serve page and the
ONNX export apply it without knowing; ``extra["temperature"]`` records T. Division by T > 0
keeps every argmax, so accuracy, ROC-AUC and Grad-CAM's maps are unchanged by it. A T at the
end of its search range is not applied: a validation split the network separates perfectly
drives T towards 0 without bound, and folding that in would turn every probability into 0
or 1.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cnnlab.files import write_csv, write_json
from cnnlab.metrics import (
    at_temperature_bound,
    binary_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    temperature_scaled,
)
from cnnlab.predictions import csv_rows
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.evaluation.report import write_report
from cnnlab.transfer.inference.engines import Say, for_images, stderr_note
from cnnlab.transfer.inference.predict import metrics_of, predict_proba, prediction_rows
from cnnlab.transfer.models import preprocessing
from cnnlab.transfer.results import Outcome
from cnnlab.transfer.thresholds import YOUDEN, choose, parse_policy

if TYPE_CHECKING:
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data.folders import LoadedSplit
    from cnnlab.transfer.data.prepare import Prepared
    from cnnlab.transfer.results import CalibrationChange, FitResult, RunMetrics

CARVED_TEST = "test split carved from train"


def _warn_if_uninformative(labels: np.ndarray, score: np.ndarray, ckpt, say: Say) -> None:
    """Youden's J <= 0 at the best ROC point: no threshold does better than chance on the
    validation split, and the one chosen (1.000) calls no image positive. Said, not silent."""
    point = binary_metrics(labels, score, ckpt.threshold)
    if point["sensitivity"] + point["specificity"] - 1 <= 0:
        say(
            f"warning: no threshold separates {ckpt.class_names[1]} from {ckpt.class_names[0]} "
            f"on the validation split (Youden's J <= 0); the operating threshold "
            f"is {ckpt.threshold:.3f}, where (almost) no image is called {ckpt.class_names[1]}"
        )


def held_out(prepared: Prepared) -> tuple[str, str]:
    """(split key, what ``evaluated_on`` says): the test folder, a carved test split, or the
    validation split when ``--test-size 0`` left no test split."""
    if "test" not in prepared.splits:
        return "val", "val"
    return "test", CARVED_TEST if "test" in prepared.report["carved"] else "test"


def assess(
    cfg: TransferConfig,
    prepared: Prepared,
    result: FitResult,
    device: torch.device,
    described: str,
    evaluated_on: str | None = None,
    say: Say = stderr_note,
) -> Outcome:
    """Calibrate and threshold on validation, then measure the held-out split once.

    The network runs once over each split, through ``cfg.engine`` (ONNX Runtime on a CPU for
    a few hundred images); the temperature is applied to those outputs, so the calibrated
    probabilities are what the folded checkpoint gives, without running it again."""
    ckpt = best_checkpoint(cfg, prepared, result)
    val = prepared.splits["val"]
    split, name = held_out(prepared)
    held = prepared.splits[split]
    val_before, before = _probabilities(cfg, result.model, ckpt, [val, held], device, say)
    val_proba, proba = val_before, before
    calibration, temperature = None, 1.0
    if cfg.calibrate:
        temperature = fit_temperature(val.labels, val_before)
        if not at_temperature_bound(temperature):
            fold_temperature(ckpt, result.model, temperature)
            val_proba = temperature_scaled(val_before, temperature)
            proba = temperature_scaled(before, temperature)
    val_metrics = metrics_of(val.labels, val_proba, ckpt.class_names, None)
    policy = parse_policy(cfg.threshold_policy)
    if len(prepared.classes) == 2 and len(np.unique(val.labels)) == 2:
        ckpt.threshold = choose(policy, val.labels, val_proba[:, 1])
        ckpt.extra["threshold_policy"] = str(policy)
        if policy.kind == YOUDEN:
            _warn_if_uninformative(val.labels, val_proba[:, 1], ckpt, say)
    held_metrics = metrics_of(
        held.labels, proba, ckpt.class_names, ckpt.threshold, cfg.seed, str(policy)
    )
    if cfg.calibrate:
        calibration = {
            "temperature": temperature,
            "applied": "temperature" in ckpt.extra,  # not at a bound of the search
            "fitted_on": "val",
            "val": _change(val.labels, val_before, val_proba),
            "held_out": _change(held.labels, before, proba),
        }
    metrics: RunMetrics = {
        **held_metrics,
        "evaluated_on": evaluated_on or name,
        "class_names": prepared.classes,
        "threshold": ckpt.threshold,
        "threshold_policy": str(policy),
        "calibration": calibration,
        "best_epoch": result.best_epoch,
        "monitor": cfg.monitor,
        "epochs_run": len(result.history),
        "train_seconds": result.train_seconds,
        "images_per_second": result.images_seen / max(result.train_step_seconds, 1e-9),
        "feature_cache": result.used_feature_cache,
        "head_dropout": result.head_dropout,
        "peak_rss_mb": result.peak_rss_mb,
        "device": described,
        "n_train": len(prepared.splits["train"]),
        "n_val": len(val),
        "n_test": len(prepared.splits["test"]) if "test" in prepared.splits else 0,
        "val": {
            "accuracy": val_metrics["test_accuracy"],  # the contract's name, on val
            "balanced_accuracy": val_metrics["balanced_accuracy"],
            "macro_f1": val_metrics["macro_f1"],
            "roc_auc": val_metrics["roc_auc"],
            "pr_auc": val_metrics["pr_auc"],
            "ece": val_metrics["ece"],
        },
    }
    applied = "temperature" in ckpt.extra
    return Outcome(metrics, ckpt, split, held, proba, before if applied else None, val_proba)


def _probabilities(
    cfg: TransferConfig,
    model: torch.nn.Module,
    ckpt: ckpt_io.Checkpoint,
    splits: list[LoadedSplit],
    device: torch.device,
    say: Say,
) -> list[np.ndarray]:
    """The probabilities of ``model`` on each split (a split listed twice is run once), by
    one network for all of them: the engine chosen for their total size, checked on the first
    split's images. Each split is read batch by batch from its (memory-mapped) images."""
    distinct = list({id(s): s for s in splits}.values())
    total = sum(len(s) for s in distinct)
    first = distinct[0].images
    engine = for_images(model, first, ckpt.mean, ckpt.std, device, cfg.engine, say, total)
    by_id = {
        id(s): predict_proba(
            engine.network, s.images, ckpt.mean, ckpt.std, device, channels_last=False
        )
        for s in distinct
    }
    return [by_id[id(s)] for s in splits]


def _change(labels: np.ndarray, before: np.ndarray, after: np.ndarray) -> CalibrationChange:
    return {
        "ece_before": expected_calibration_error(labels, before),
        "ece_after": expected_calibration_error(labels, after),
        "nll_before": negative_log_likelihood(labels, before),
        "nll_after": negative_log_likelihood(labels, after),
    }


def fold_temperature(ckpt: ckpt_io.Checkpoint, model: torch.nn.Module, temperature: float):
    """Divide the classifier head by ``temperature`` in the checkpoint and the model:
    softmax(W x / T + b / T) is softmax(logits / T)."""
    head = ckpt_io.head_name_of(ckpt.state_dict)
    state = dict(ckpt.state_dict)
    for key in (f"{head}.weight", f"{head}.bias"):
        if key in state:
            state[key] = state[key] / temperature
    ckpt.state_dict = state
    ckpt.extra["temperature"] = float(temperature)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()})


def best_checkpoint(
    cfg: TransferConfig, prepared: Prepared, result: FitResult
) -> ckpt_io.Checkpoint:
    pre = preprocessing(cfg.arch, cfg.image_size)
    return ckpt_io.Checkpoint(
        cfg.arch,
        prepared.classes,
        cfg.image_size,
        list(pre.mean),
        list(pre.std),
        result.best_state,
        contrast=cfg.contrast,
        extra={
            "epoch": result.best_epoch,
            "monitor": cfg.monitor,
            "monitor_value": result.best_value,
        },
    )


def write_outcome(
    run_dir: Path,
    cfg: TransferConfig,
    prepared: Prepared,
    result: FitResult,
    outcome: Outcome,
    report: bool = True,
) -> None:
    """metrics.json, the held-out predictions, best.pt and last.pt (and the report)."""
    write_json(run_dir / "metrics.json", outcome.metrics)
    rows = csv_rows(labelled_rows(outcome, prepared))
    write_csv(run_dir / f"predictions_{outcome.split}.csv", rows)
    if outcome.split != "val" and outcome.val_proba is not None:
        # the scores the threshold was chosen on: a later policy is re-chosen on them
        val = prepared.splits["val"]
        args = (val.paths, outcome.val_proba, val.labels, prepared.classes, outcome.ckpt.threshold)
        write_csv(run_dir / "predictions_val.csv", csv_rows(true_rows(*args)))
    ckpt = outcome.ckpt
    ckpt_io.save(ckpt, run_dir / "best.pt")
    last = copy.copy(ckpt)  # the last epoch as trained: not calibrated
    last.state_dict = result.last_state
    last.extra = {"epoch": len(result.history), "monitor": cfg.monitor}
    ckpt_io.save(last, run_dir / "last.pt")
    if report:
        write_report(run_dir, cfg, prepared, result, outcome)


def labelled_rows(outcome: Outcome, prepared: Prepared) -> list[dict[str, Any]]:
    """``prediction_rows`` of the held-out split, each with its true class."""
    held, threshold = outcome.held, outcome.ckpt.threshold
    return true_rows(held.paths, outcome.proba, held.labels, prepared.classes, threshold)


def true_rows(
    paths: list[str], proba: np.ndarray, labels: np.ndarray, classes: list[str], threshold
) -> list[dict[str, Any]]:
    """``prediction_rows`` of labelled images, each with its true class."""
    rows = prediction_rows(paths, proba, classes, 3, threshold)
    for row, label in zip(rows, labels, strict=True):
        row["true"] = classes[int(label)]
    return rows
