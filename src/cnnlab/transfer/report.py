"""How a transfer-learning run reads: the HTML/Markdown report and the console summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import plots
from cnnlab.report import Report
from cnnlab.transfer.predict import cam_overlays

if TYPE_CHECKING:
    from rich.console import Console
    from torch import nn

    from cnnlab.transfer.checkpoint import Checkpoint
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data import LoadedSplit
    from cnnlab.transfer.results import FitResult, RunMetrics
    from cnnlab.transfer.splits import Prepared

MISTAKES = 8  # most confident mistakes shown with Grad-CAM


def print_summary(console: Console, m: Mapping[str, Any]) -> None:
    """Held-out metrics in two lines; ``m`` is a ``metrics.json`` plus ``evaluated_on``."""
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    console.print(
        f"{m['evaluated_on']}: accuracy {m['test_accuracy']:.3f}  balanced_accuracy "
        f"{m['balanced_accuracy']:.3f}  macro_f1 {m['macro_f1']:.3f}  roc_auc {auc}  "
        f"ece {m['ece']:.3f}"
    )
    if "operating_point" in m:
        op = m["operating_point"]
        console.print(
            f"operating threshold {op['threshold']:.3f} (chosen on val): sensitivity "
            f"{op['sensitivity']:.3f}  specificity {op['specificity']:.3f}"
        )


def write_report(
    run_dir: Path,
    cfg: TransferConfig,
    prepared: Prepared,
    result: FitResult,
    metrics: RunMetrics,
    held: LoadedSplit,
    proba: np.ndarray,
    ckpt: Checkpoint,
) -> Path:
    classes = prepared.classes
    curves = plots.learning_curves(result.history, run_dir / "learning_curves.png")
    cm = plots.confusion_matrix(
        metrics["confusion_matrix"], classes, run_dir / "confusion_matrix.png"
    )
    roc = plots.roc_curves(held.labels, proba, classes, run_dir / "roc.png")

    r = Report(f"Transfer learning: {cfg.arch} on {Path(prepared.report['data_dir']).name}")
    r.paragraph(_conclusion(metrics), css_class="conclusion")
    r.heading("Setup")
    r.table([{"setting": k, "value": str(v)} for k, v in cfg.to_dict().items()])
    r.paragraph(
        f"Device: {metrics['device']}. Training took {metrics['train_seconds']:.1f} s "
        f"({metrics['epochs_run']} epochs, best epoch {metrics['best_epoch']} by "
        f"validation {cfg.monitor})."
    )

    r.heading("Data")
    _data_section(r, prepared)

    r.heading("Learning curves")
    r.image(curves, "Loss and accuracy per epoch on the training and validation splits")
    r.table(
        [
            {
                k: row[k]
                for k in (
                    "epoch",
                    "train_loss",
                    "val_loss",
                    "val_accuracy",
                    "val_balanced_accuracy",
                    "val_roc_auc",
                    "stages_trained",
                )
            }
            for row in result.history
        ]
    )

    r.heading(f"Results on the {metrics['evaluated_on']} split")
    r.table(
        [
            {"metric": k, "value": metrics[k]}
            for k in (
                "test_accuracy",
                "balanced_accuracy",
                "macro_f1",
                "roc_auc",
                "ece",
                "test_loss",
            )
        ]
    )
    r.table(metrics["per_class"], ["class", "precision", "recall", "f1", "support"])
    if "operating_point" in metrics:
        r.paragraph(
            f"Operating point for {metrics['positive_class']} (positive class): threshold "
            f"chosen on the validation split by Youden's J, never on the test split."
        )
        r.table(
            [
                {"decision": "probability >= 0.5", **metrics["at_argmax"]},
                {"decision": "validation threshold", **metrics["operating_point"]},
            ],
            [
                "decision",
                "threshold",
                "sensitivity",
                "specificity",
                "ppv",
                "npv",
                "balanced_accuracy",
            ],
        )
    r.image(cm, "Confusion matrix (colour: fraction of the true class)")
    r.image(roc, "ROC curve(s), one-vs-rest")

    r.heading("Most confident mistakes, with Grad-CAM")
    grid = _mistakes(run_dir, result.model, ckpt, held, proba, classes)
    if grid is None:
        r.paragraph("No mistakes on this split.")
    else:
        r.paragraph(
            "Top row: the image; bottom row: Grad-CAM of the predicted class (red = "
            "regions that raised that class's score). Check that the network looks at "
            "the lungs, not at markers, text or borders."
        )
        r.image(grid, "Most confident mistakes")
    html, _ = r.write(run_dir)
    return html


def _conclusion(m: RunMetrics) -> str:
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    text = (
        f"On the {m['evaluated_on']} split ({m['n_test'] or m['n_val']} images): accuracy "
        f"{m['test_accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, macro F1 "
        f"{m['macro_f1']:.3f}, ROC-AUC {auc}, ECE {m['ece']:.3f}."
    )
    if "operating_point" in m:
        op = m["operating_point"]
        text += (
            f" At the validation threshold {op['threshold']:.3f}: sensitivity "
            f"{op['sensitivity']:.3f}, specificity {op['specificity']:.3f}."
        )
    if m["evaluated_on"] == "val":
        text += (
            " There is no test split, so these figures come from the validation split "
            "that also chose the best epoch: they are optimistic."
        )
    return text


def _data_section(r: Report, prepared: Prepared) -> None:
    rep = prepared.report
    rows = []
    for split, counts in rep["counts"].items():
        rows.append(
            {
                "split": split,
                **dict(zip(prepared.classes, counts, strict=True)),
                "total": sum(counts),
            }
        )
    r.table(rows, ["split", *prepared.classes, "total"])
    notes = [
        f"Layout: {'train/val/test folders as given' if rep['layout'] == 'given' else 'one pool'}"
        + (f"; carved stratified: {', '.join(rep['carved'])}" if rep["carved"] else "")
    ]
    notes.append(f"Skipped (unreadable, not an image, too small): {len(rep['skipped'])}")
    notes.append(
        f"Duplicates (sha256 or 256-bit dHash): {rep['duplicates_within_split']} pair(s) "
        f"within a split, {rep['duplicates_across_splits']} across splits (leakage)"
    )
    if rep["removed_by_dedupe"]:
        notes.append(f"Removed by --dedupe: {len(rep['removed_by_dedupe'])} image(s)")
    r.bullets(notes)
    if rep["skipped"]:
        r.table(rep["skipped"][:50], ["split", "path", "reason"])
    cross = [d for d in rep["duplicates"] if d["split_a"] != d["split_b"]]
    if cross:
        r.table(cross[:50], ["kind", "split_a", "path_a", "split_b", "path_b", "distance"])


def _mistakes(
    run_dir: Path,
    model: nn.Module,
    ckpt: Checkpoint,
    held: LoadedSplit,
    proba: np.ndarray,
    classes: list[str],
) -> Path | None:
    pred = proba.argmax(1)
    wrong = np.nonzero(pred != held.labels)[0]
    if not len(wrong):
        return None
    wrong = wrong[np.argsort(-proba[wrong, pred[wrong]])][:MISTAKES]
    model.to("cpu")
    images = held.images[wrong]
    overlays = cam_overlays(model, ckpt, images)
    titles = [
        f"true {classes[held.labels[i]]}\npred {classes[pred[i]]} {proba[i, pred[i]]:.2f}"
        for i in wrong
    ]
    return plots.image_grid(
        [*images, *overlays],
        titles + ["Grad-CAM"] * len(overlays),
        run_dir / "mistakes_gradcam.png",
        cols=len(wrong),
    )
