"""How a transfer-learning run reads: the HTML/Markdown report and the console summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import plots
from cnnlab.report import Report
from cnnlab.transfer.inference.predict import cam_overlays
from cnnlab.transfer.results import (
    MULTICLASS_NOTE,
    THRESHOLD_DEPENDENT,
    THRESHOLD_FREE,
    VALIDATION_THRESHOLD,
    inference_lines,
    point_label,
)
from cnnlab.transfer.thresholds import parse_policy

if TYPE_CHECKING:
    from rich.console import Console
    from torch import nn

    from cnnlab.transfer.checkpoint import Checkpoint
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data.folders import LoadedSplit
    from cnnlab.transfer.data.prepare import Prepared
    from cnnlab.transfer.results import FitResult, Outcome, RunMetrics

MISTAKES = 8  # most confident mistakes shown with Grad-CAM


# metrics.json key -> how the console and the report name it
NAMES = {
    "test_accuracy": "accuracy",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "test_loss": "log loss",
    "ece": "ECE",
}


def at_bound(temperature: float) -> str:
    """Why a temperature at an end of its search range was not applied. The two ends mean
    opposite things: the lower one a network that separates the validation split (nearly)
    perfectly, the upper one a network whose probabilities carry (nearly) nothing about it,
    whose likelihood only improves as they flatten towards uniform."""
    if temperature > 1:
        why = (
            "the network's probabilities carry (nearly) no information on the validation "
            "split, so flattening them towards uniform keeps improving its likelihood"
        )
    else:
        why = (
            "the network separates the validation split (nearly) perfectly, so its "
            "likelihood cannot pin T down"
        )
    return (
        f"the temperature reached its search bound ({temperature:.3g}): {why}; best.pt is left "
        "uncalibrated (a larger validation split helps)"
    )


OPTIMISTIC = (
    "--test-size 0 left no test split: these figures come from the validation split that "
    "also chose the best epoch (and the threshold), so they are optimistic"
)


def split_phrase(evaluated_on: str) -> str:
    """``evaluated_on`` as a noun phrase: "the test split", "the test split carved from
    train", "fold 2 of 5"."""
    if evaluated_on.startswith("fold"):
        return evaluated_on
    return f"the {evaluated_on}" + ("" if "split" in evaluated_on else " split")


def with_ci(value: float | None, ci: list[float] | None = None) -> str:
    """``0.873 [0.851, 0.894]``; ``n/a`` for an undefined metric."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + ("" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]")


def free_figures(m: Mapping[str, Any]) -> list[str]:
    """The threshold-free metrics, e.g. ``ROC-AUC 0.958 [0.941, 0.972]``."""
    ci = m.get("ci") or {}
    return [f"{NAMES[k]} {with_ci(m.get(k), ci.get(k))}" for k in THRESHOLD_FREE if k in m]


def operating_points(m: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, metrics) of each operating point of a ``metrics.json``, the deployed one
    (the validation-chosen threshold) first; a multi-class run has only the argmax, its
    top-level figures."""
    if "at_argmax" not in m:
        ci = m.get("ci") or {}
        keys = {"accuracy": "test_accuracy", "balanced_accuracy": "balanced_accuracy"}
        keys["macro_f1"] = "macro_f1"
        block = {k: m[flat] for k, flat in keys.items()}
        block["ci"] = {k: ci.get(flat) for k, flat in keys.items()}
        return [(f"argmax ({MULTICLASS_NOTE})", block)]
    points = []
    if "operating_point" in m:
        threshold = m["operating_point"]["threshold"]
        points.append((point_label(VALIDATION_THRESHOLD, threshold), m["operating_point"]))
    positive = m.get("positive_class", "class 1")
    points.append((f"argmax ({positive} when its probability >= 0.5)", m["at_argmax"]))
    return points


def point_figures(block: Mapping[str, Any], extra: bool = False) -> list[str]:
    """Every threshold-dependent metric at one operating point, with its interval."""
    ci = block.get("ci") or {}
    keys = [*THRESHOLD_DEPENDENT, *(("ppv", "npv") if extra else ())]
    return [f"{NAMES[k]} {with_ci(block[k], ci.get(k))}" for k in keys if k in block]


def print_summary(console: Console, m: Mapping[str, Any]) -> None:
    """Held-out metrics with their intervals, threshold-free ones apart and each threshold-
    dependent one at a named operating point; ``m`` is a ``metrics.json`` plus ``evaluated_on``."""
    n = m.get("n_images") or m.get("n_test") or m.get("n_val")
    method = f"; 95% intervals: {m['ci_method']}" if m.get("ci_method") else ""
    console.print(f"{m['evaluated_on']}" + (f", {n} images" if n else "") + method)
    for line in inference_lines(m.get("inference")):  # ensemble, --tta, --adapt-bn: said
        console.print(line)
    console.print("  threshold-free: " + "  ".join(free_figures(m)))
    for name, block in operating_points(m):
        policy = f": {block['policy']}" if block.get("policy") else ""
        chosen = f" (chosen on val{policy})" if name.startswith(VALIDATION_THRESHOLD) else ""
        console.print(f"  at the {name}{chosen}: " + "  ".join(point_figures(block)))
    if m.get("calibration"):
        c = m["calibration"]
        console.print(
            f"calibration: temperature {c['temperature']:.3f} (fitted on val); ECE on the "
            f"held-out split {c['held_out']['ece_before']:.3f} -> {c['held_out']['ece_after']:.3f}"
        )
        if not c["applied"]:
            console.print(f"[yellow]warning:[/] {at_bound(c['temperature'])}")
    if m["evaluated_on"] == "val":
        console.print(f"[yellow]warning:[/] {OPTIMISTIC}")


def write_report(
    run_dir: Path,
    cfg: TransferConfig,
    prepared: Prepared,
    result: FitResult,
    outcome: Outcome,
) -> Path:
    classes, metrics, held, proba = prepared.classes, outcome.metrics, outcome.held, outcome.proba
    curves = plots.learning_curves(result.history, run_dir / "learning_curves.png")
    cm = plots.confusion_matrix(
        metrics["confusion_matrix"], classes, run_dir / "confusion_matrix.png"
    )
    roc = plots.roc_curves(held.labels, proba, classes, run_dir / "roc.png")
    pr = plots.precision_recall_curves(
        held.labels, proba, classes, run_dir / "precision_recall.png"
    )
    probas = {"model": proba}
    if outcome.proba_uncalibrated is not None:
        probas = {"before scaling": outcome.proba_uncalibrated, "after scaling": proba}
    reliability = plots.reliability_diagram(held.labels, probas, run_dir / "reliability.png")

    r = Report(f"Transfer learning: {cfg.arch} on {Path(prepared.report['data_dir']).name}")
    r.paragraph(_conclusion(metrics), css_class="conclusion")
    r.heading("Setup")
    r.table([{"setting": k, "value": str(v)} for k, v in cfg.to_dict().items()])
    r.paragraph(
        f"Device: {metrics['device']}. Training took {metrics['train_seconds']:.1f} s "
        f"({metrics['epochs_run']} epochs, best epoch {metrics['best_epoch']} by "
        f"validation {cfg.monitor})"
        + (f", peak memory {rss:.0f} MiB" if (rss := metrics.get("peak_rss_mb")) else "")
        + (f"; dropout {p:g} on the head's input" if (p := metrics.get("head_dropout")) else "")
        + "."
    )

    r.heading("Data")
    data_section(r, prepared)

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

    r.heading(f"Results on {split_phrase(metrics['evaluated_on'])}")
    if metrics["evaluated_on"] == "val":
        r.paragraph(f"Warning: {OPTIMISTIC}.", css_class="warning")
    results_section(r, metrics)
    r.image(cm, "Confusion matrix at the argmax (colour: fraction of the true class)")
    r.image(roc, "ROC curve(s), one-vs-rest")
    r.image(pr, "Precision-recall curve(s), one-vs-rest; AP = PR-AUC")

    r.heading("Calibration")
    calibration_section(r, metrics)
    r.image(reliability, "Reliability diagram: accuracy against confidence, per bin")

    r.heading("Most confident mistakes, with Grad-CAM")
    grid = _mistakes(run_dir, result.model, outcome.ckpt, held, proba, classes)
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


def _metric_rows(values: Mapping[str, Any], ci: Mapping[str, Any], keys) -> list[dict]:
    """One table row per metric of ``keys`` present in ``values``, with its interval."""
    return [
        {"metric": NAMES[k], "value": values[k], "95% interval": with_ci(values[k], ci.get(k))}
        for k in keys
        if k in values
    ]


def results_section(r: Report, metrics: Mapping[str, Any]) -> None:
    """The held-out metrics with their intervals: threshold-free ones in one table, the
    threshold-dependent ones in one table per named operating point, then per class."""
    ci = metrics.get("ci") or {}
    r.paragraph("Threshold-free (no decision threshold):")
    r.table(_metric_rows(metrics, ci, THRESHOLD_FREE))
    for name, block in operating_points(metrics):
        text = f"At the {name}"
        if name.startswith(VALIDATION_THRESHOLD):
            text += (
                f", {metrics['positive_class']} positive: chosen on the validation split "
                f"{parse_policy(block.get('policy', 'youden')).describe()}, never on the "
                "held-out split; the decision best.pt deploys"
            )
        r.paragraph(text + ":")
        point_ci = block.get("ci") or {}
        keys = [*THRESHOLD_DEPENDENT, "ppv", "npv"]
        r.table(_metric_rows(block, point_ci, keys))
    if ci:
        r.paragraph(
            f"Brackets: 95% intervals, {metrics['ci_method']} (images drawn with replacement; "
            "percentile intervals can be a little narrow on small splits)."
        )
    r.paragraph("Per class, at the argmax:")
    r.table(metrics["per_class"], ["class", "precision", "recall", "f1", "support"])


def calibration_section(r: Report, metrics: Mapping[str, Any]) -> None:
    c = metrics.get("calibration")
    if not c:
        r.paragraph(
            f"ECE (expected calibration error, 15 bins) {metrics['ece']:.3f}. Not calibrated: "
            "--calibrate fits temperature scaling on the validation split."
        )
        return
    r.paragraph(
        f"Temperature scaling fitted on the validation split: T = {c['temperature']:.3f} "
        f"({'softens' if c['temperature'] > 1 else 'sharpens'} the probabilities; decisions by "
        "argmax are unchanged). "
        + (
            "best.pt holds the calibrated model."
            if c["applied"]
            else f"Warning: {at_bound(c['temperature'])}."
        )
    )
    rows = [
        {"split": "validation (where T was fitted)", **c["val"]},
        {"split": metrics["evaluated_on"], **c["held_out"]},
    ]
    r.table(rows, ["split", "ece_before", "ece_after", "nll_before", "nll_after"])


def _conclusion(m: RunMetrics) -> str:
    n = m["n_test"] or m["n_val"]
    name, block = operating_points(m)[0]  # the deployed operating point
    text = f"On {split_phrase(m['evaluated_on'])} ({n} images), at the {name}: "
    text += ", ".join(point_figures(block)) + "; threshold-free: "
    text += ", ".join(free_figures(m)) + "."
    if m.get("ci"):
        text += " Brackets: 95% bootstrap intervals."
    if m["evaluated_on"] == "val":
        text += f" {OPTIMISTIC[0].upper()}{OPTIMISTIC[1:]}."
    return text


def data_section(r: Report, prepared: Prepared) -> None:
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
    if rep.get("positive_class"):
        notes.append(f"Positive class: {rep['positive_class']}")
    groups = rep.get("groups")
    if groups:
        notes.append(
            f"Groups (--group-regex {groups['regex']}): {groups['groups']} "
            f"({', '.join(f'{n} in {s}' for s, n in groups['per_split'].items())}); "
            f"{groups['files_without_group']} file(s) matched no group and count as their own; "
            f"{groups['across_splits']} group(s) in two splits"
        )
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
