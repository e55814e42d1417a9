"""``--folds K``: K trainings, each tested on the fold it never saw, in one run directory.

``data.prepare.prepare_data`` cuts the pool into K stratified folds (whole groups with
``--group-regex``). Fold k trains on the other folds less a validation split, which chooses
the epoch, the threshold and the temperature exactly as in a single run (``assess``), and is
tested on fold k: every image is tested once. Each fold writes ``fold_k/`` (metrics.json with
bootstrap intervals, predictions, history, splits, best.pt); the run's ``metrics.json`` holds
the mean over folds with a Student-t 95% interval, and ``report.html`` reports all folds.

The t-interval treats the K folds as independent samples. They are not (their training sets
overlap), so it is somewhat narrow (Nadeau & Bengio 2003); the per-fold values stand next to
it in the report. There is no single model to deploy: train without ``--folds`` for that.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import intervals, plots
from cnnlab.files import write_csv, write_json
from cnnlab.predictions import csv_rows
from cnnlab.report import Report
from cnnlab.transfer.data.prepare import fold_split
from cnnlab.transfer.evaluation.assess import assess, labelled_rows, write_outcome
from cnnlab.transfer.evaluation.report import NAMES, data_section, print_summary, with_ci
from cnnlab.transfer.training.fit import fit

if TYPE_CHECKING:
    import torch
    from rich.console import Console

    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data.prepare import Prepared
    from cnnlab.transfer.results import CrossValMetrics, FoldMetrics

METRICS = ("test_accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc", "ece")
# the means over folds, grouped so that no line or table mixes operating points (issue 24)
GROUPS = (
    ("threshold-free", ("roc_auc", "pr_auc", "ece")),
    ("at each fold's validation-chosen threshold", ("sensitivity", "specificity")),
    ("at the argmax", ("test_accuracy", "balanced_accuracy", "macro_f1")),
)


def groups(summary: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(label, keys) of each group the summary holds; multi-class: argmax only, said so."""
    found = [(label, [k for k in keys if k in summary]) for label, keys in GROUPS]
    found = [(label, keys) for label, keys in found if keys]
    if "sensitivity" not in summary:
        found = [
            (label + " (multi-class: the only operating point)" if "argmax" in label else label, k)
            for label, k in found
        ]
    return found


LEVEL = 0.95


def cross_validate(
    run_dir: Path,
    cfg: TransferConfig,
    prepared: Prepared,
    device: torch.device,
    described: str,
    console: Console,
) -> CrossValMetrics:
    """Train and test every fold into ``run_dir/fold_k``; write the summary and the report."""
    k = cfg.folds or 0
    if prepared.folds is None or k < 2:
        raise ValueError("cross_validate needs data prepared with --folds 2 or more")
    pool = prepared.splits["train"]
    out_of_fold = np.zeros((len(pool), len(prepared.classes)))
    rows: list[FoldMetrics] = []
    predictions: list[dict[str, Any]] = []
    epochs, seconds = [], 0.0
    for fold in range(k):
        part = fold_split(prepared, fold, cfg)
        counts = ", ".join(f"{n} {len(s)}" for n, s in part.splits.items())
        console.print(f"fold {fold + 1}/{k}: {counts}")
        result = fit(cfg, part, device, console)
        outcome = assess(
            cfg, part, result, device, described, f"fold {fold + 1} of {k}", console.print
        )
        where = run_dir / f"fold_{fold + 1}"
        where.mkdir()
        write_csv(where / "history.csv", result.history)
        write_csv(where / "splits.csv", part.manifest())
        write_outcome(where, cfg, part, result, outcome, report=False)
        print_summary(console, outcome.metrics)
        out_of_fold[prepared.folds == fold] = outcome.proba
        rows.append(fold_row(fold, outcome.metrics))
        predictions += [{"fold": fold + 1, **row} for row in labelled_rows(outcome, part)]
        epochs.append(len(result.history))
        seconds += result.train_seconds
    summary = summarise(rows, prepared.classes)
    summary |= {
        "n_images": len(pool),
        "epochs_run": epochs,
        "train_seconds": seconds,
        "peak_rss_mb": result.peak_rss_mb,  # the folds ran in this one process, one by one
        "device": described,
    }
    write_json(run_dir / "metrics.json", summary)
    write_csv(run_dir / "predictions_out_of_fold.csv", csv_rows(predictions))
    write_cv_report(run_dir, cfg, prepared, summary, out_of_fold)
    console.print(f"{k}-fold cross-validation, mean [95% t-interval] over folds:")
    for label, keys in groups(summary):
        console.print(
            f"  {label}: " + "  ".join(f"{NAMES[m]} {cv_figure(summary, m)}" for m in keys)
        )
    return summary


def fold_row(fold: int, m: dict[str, Any]) -> FoldMetrics:
    row: FoldMetrics = {
        "fold": fold + 1,
        "n_test": m["n_test"],
        **{key: m[key] for key in METRICS},  # type: ignore[typeddict-item]
    }
    if "operating_point" in m:
        row["sensitivity"] = m["operating_point"]["sensitivity"]
        row["specificity"] = m["operating_point"]["specificity"]
    return row


def t_interval(values: list[float | None], level: float = LEVEL):
    """(mean, std, [low, high]) of the defined values (:func:`cnnlab.intervals.t_interval`);
    the interval needs two of them and is clipped to [0, 1], where every metric summarised
    here lives (with 3 folds, t(0.975, 2) = 4.3 standard errors easily reach past it)."""
    i = intervals.t_interval(values, level)
    if i.n < 2:
        return (i.mean if i.n else None), None, None
    return i.mean, i.std, [max(i.low, 0.0), min(i.high, 1.0)]


def summarise(rows: list[FoldMetrics], classes: list[str]) -> CrossValMetrics:
    """Means over folds, their standard deviations and Student-t intervals."""
    keys = [*METRICS] + (["sensitivity", "specificity"] if "sensitivity" in rows[0] else [])
    summary: dict[str, Any] = {
        "evaluated_on": f"{len(rows)}-fold cross-validation",
        "folds": len(rows),
        "class_names": classes,
    }
    if len(classes) == 2:
        summary["positive_class"] = classes[1]
    std, ci = {}, {}
    for key in keys:
        summary[key], std[key], ci[key] = t_interval([row.get(key) for row in rows])
    summary |= {
        "std": std,
        "ci": ci,
        "ci_method": f"Student-t {LEVEL:.0%} interval of the mean over {len(rows)} folds",
        "per_fold": rows,
    }
    return summary  # type: ignore[return-value]


def cv_figure(m: dict[str, Any], key: str) -> str:
    std = m["std"].get(key)
    return with_ci(m.get(key), m["ci"].get(key)) + ("" if std is None else f" (sd {std:.3f})")


def write_cv_report(
    run_dir: Path,
    cfg: TransferConfig,
    prepared: Prepared,
    summary: CrossValMetrics,
    out_of_fold: np.ndarray,
) -> Path:
    classes = prepared.classes
    labels = prepared.splits["train"].labels
    roc = plots.roc_curves(labels, out_of_fold, classes, run_dir / "roc.png")
    pr = plots.precision_recall_curves(
        labels, out_of_fold, classes, run_dir / "precision_recall.png"
    )
    reliability = plots.reliability_diagram(
        labels, {"out of fold": out_of_fold}, run_dir / "reliability.png"
    )
    k, data = summary["folds"], Path(prepared.report["data_dir"]).name
    figures = [
        f"{label}: "
        + ", ".join(f"{NAMES[m]} {with_ci(summary[m], summary['ci'][m])}" for m in keys)
        for label, keys in groups(summary)
    ]
    r = Report(f"Cross-validation ({k} folds): {cfg.arch} on {data}")
    r.paragraph(
        f"{k}-fold cross-validation on {summary['n_images']} images: every image was tested "
        f"once, by the model of the fold that did not train on it. Means, {'; '.join(figures)}. "
        f"Brackets: {summary['ci_method']} (somewhat narrow: folds share training data).",
        css_class="conclusion",
    )
    r.heading("Setup")
    r.table([{"setting": key, "value": str(v)} for key, v in cfg.to_dict().items()])
    r.paragraph(f"Device: {summary['device']}. All folds took {summary['train_seconds']:.1f} s.")
    r.heading("Data")
    data_section(r, prepared)
    if prepared.report["fold_counts"]:
        r.table(
            [
                {"fold": i + 1, **dict(zip(classes, counts, strict=True))}
                for i, counts in enumerate(prepared.report["fold_counts"])
            ],
            ["fold", *classes],
        )
    r.heading("Results over folds")
    for label, keys in groups(summary):
        r.paragraph(f"{label[0].upper()}{label[1:]}:")
        r.table(
            [
                {"metric": NAMES[m], "mean": summary[m], "sd": summary["std"][m],
                 "95% interval": with_ci(summary[m], summary["ci"][m]),
                 **{f"fold {row['fold']}": row.get(m) for row in summary["per_fold"]}}
                for m in keys
            ]
        )  # fmt: skip
    r.paragraph(
        "Each fold's threshold (two classes) and temperature (--calibrate) were chosen on "
        "that fold's validation split; fold_k/metrics.json holds its bootstrap intervals."
    )
    r.heading("Out-of-fold curves")
    r.paragraph("Every image's probabilities from the model that did not train on it, pooled.")
    r.image(roc, "ROC curve(s), one-vs-rest, pooled out of fold")
    r.image(pr, "Precision-recall curve(s), pooled out of fold")
    r.image(reliability, "Reliability diagram, pooled out of fold")
    html, _ = r.write(run_dir)
    return html
