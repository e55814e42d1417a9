"""``cnnlab transfer train``: data -> model -> epochs -> checkpoints -> metrics -> report.

Reads top to bottom: ``train`` prepares the data (``splits.prepare_data``), fits
(``fit.fit``), then evaluates the best checkpoint and writes the run directory. Everything
happens inside ``run_directory``, so a failed or interrupted run leaves nothing half-written;
a diverged loss (``fit``) or a full disk (``outputs.disk_errors``) ends it in one line.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.console import make_console
from cnnlab.metrics import choose_threshold
from cnnlab.runs import environment_info, run_directory, write_csv, write_json
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.fit import fit
from cnnlab.transfer.models import known_arch, preprocessing, require_weights
from cnnlab.transfer.outputs import disk_errors, require_dir_target
from cnnlab.transfer.predict import evaluate_arrays, prediction_rows
from cnnlab.transfer.report import print_summary, write_report
from cnnlab.transfer.splits import Prepared, prepare_data

if TYPE_CHECKING:
    from rich.console import Console

    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.results import FitResult, RunMetrics


def train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TransferConfig,
    overwrite: bool = False,
    console: Console | None = None,
    tensorboard: str | os.PathLike | None = None,
) -> tuple[Path, RunMetrics]:
    """Train and write a complete run directory; returns (run_dir, metrics). ``tensorboard``
    is a folder for TensorBoard logs (transfer/tensorboard.py)."""
    console = console or make_console()
    require_dir_target("--out", out)
    known_arch(cfg.arch)
    require_weights(cfg.arch, cfg.weights)
    device, described = resolve_device(cfg.device)
    board = None
    if tensorboard is not None:  # checked (and created) before training
        from cnnlab.transfer.tensorboard import TransferBoard

        board = TransferBoard(tensorboard)
    with disk_errors(out), run_directory(out, overwrite=overwrite) as tmp:
        console.print(f"device: {described}")
        prepared = prepare_data(data_dir, cfg, console)
        counts = ", ".join(f"{n} {len(s)}" for n, s in prepared.splits.items())
        console.print(f"classes: {', '.join(prepared.classes)}; images: {counts}")
        write_json(tmp / "config.json", cfg.to_dict())
        write_json(tmp / "environment.json", {**environment_info(), "device": described})
        write_json(tmp / "data_report.json", prepared.report)
        write_csv(tmp / "splits.csv", prepared.manifest())

        result = fit(cfg, prepared, device, console, on_epoch=board.log_epoch if board else None)
        write_csv(tmp / "history.csv", result.history)

        ckpt = _best_checkpoint(cfg, prepared, result)
        val = prepared.splits["val"]
        val_metrics, val_proba = evaluate_arrays(result.model, ckpt, val.images, val.labels, device)
        if len(prepared.classes) == 2 and len(np.unique(val.labels)) == 2:
            ckpt.threshold = choose_threshold(val.labels, val_proba[:, 1])
        eval_name = "test" if "test" in prepared.splits else "val"
        held = prepared.splits[eval_name]
        held_metrics, proba = evaluate_arrays(result.model, ckpt, held.images, held.labels, device)
        if board is not None:
            board.finish(eval_name, held, proba, prepared.classes, len(result.history) - 1)
        metrics: RunMetrics = {
            **held_metrics,
            "evaluated_on": eval_name,
            "class_names": prepared.classes,
            "threshold": ckpt.threshold,
            "best_epoch": result.best_epoch,
            "monitor": cfg.monitor,
            "epochs_run": len(result.history),
            "train_seconds": result.train_seconds,
            "images_per_second": result.images_seen / max(result.train_step_seconds, 1e-9),
            "feature_cache": result.used_feature_cache,
            "device": described,
            "n_train": len(prepared.splits["train"]),
            "n_val": len(val),
            "n_test": len(prepared.splits["test"]) if "test" in prepared.splits else 0,
            "val": {
                "accuracy": val_metrics["test_accuracy"],  # the contract's name, on val
                "balanced_accuracy": val_metrics["balanced_accuracy"],
                "macro_f1": val_metrics["macro_f1"],
                "roc_auc": val_metrics["roc_auc"],
                "ece": val_metrics["ece"],
            },
        }
        write_json(tmp / "metrics.json", metrics)
        rows = prediction_rows(held.paths, proba, prepared.classes, 3, ckpt.threshold)
        for row, label in zip(rows, held.labels, strict=True):
            row["true"] = prepared.classes[int(label)]
        write_csv(tmp / f"predictions_{eval_name}.csv", rows)
        ckpt_io.save(ckpt, tmp / "best.pt")
        last = copy.copy(ckpt)
        last.state_dict = result.last_state
        last.extra = {"epoch": len(result.history), "monitor": cfg.monitor}
        ckpt_io.save(last, tmp / "last.pt")
        write_report(tmp, cfg, prepared, result, metrics, held, proba, ckpt)
        print_summary(console, metrics)
    console.print(f"run written to {out}")
    return Path(out), metrics


def _best_checkpoint(
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
        extra={
            "epoch": result.best_epoch,
            "monitor": cfg.monitor,
            "monitor_value": result.best_value,
        },
    )
