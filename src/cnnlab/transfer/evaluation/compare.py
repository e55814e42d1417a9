"""``cnnlab transfer compare``: runs tested on the same images, side by side, and each against
the first with paired bootstrap intervals.

Two runs' test metrics each carry an interval, but overlapping intervals do not mean "no
difference": both models meet the same hard and easy images, and what they share cancels in
their difference. The paired bootstrap resamples the images once per resample and measures
every run on that same draw (``cnnlab.bootstrap.paired_difference_ci``), so the interval of a
difference is as narrow as the pairing allows. A difference is marked (↑ or ↓) where its
95% interval excludes zero; nothing is corrected for the number of comparisons.

Threshold-dependent metrics (accuracy, balanced accuracy, macro-F1, sensitivity, specificity)
are shown in one table per named operating point, never side by side with another point's: the
validation-chosen threshold each run deploys, then the argmax. The two can rank runs
differently, so both are shown; ROC-AUC, PR-AUC, log loss and ECE have a table of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.bootstrap import N_RESAMPLES, decisions_as_proba, paired_difference_ci
from cnnlab.errors import CnnlabError
from cnnlab.report.document import markdown_table
from cnnlab.transfer.evaluation.tested_run import (
    FREE_COLUMNS,
    POINT_COLUMNS,
    POINTS,
    TestedRun,
    align,
    ensemble_run,
    load_run,
)
from cnnlab.transfer.results import ARGMAX, MULTICLASS_NOTE, VALIDATION_THRESHOLD


def compare(run_dirs: list[str | Path], seed: int = 0, ensemble: bool = False) -> str:
    """The comparison as Markdown: the runs; one table per operating point (the validation-
    chosen threshold each run deploys, then the argmax) and one of threshold-free metrics;
    then each run against the first, in tables of the same kinds. ``ensemble``: the mean of
    all runs' probabilities is one more run (``tested_run.ensemble_run``)."""
    if len(run_dirs) < 2:
        raise CnnlabError("compare needs two or more run directories")
    runs = align([load_run(d) for d in run_dirs])
    if ensemble:
        runs.append(ensemble_run(runs, run_dirs, seed))
    ref = runs[0]
    classes = ref.metrics["class_names"]
    counts = np.bincount(ref.labels, minlength=len(classes))
    per_class = ", ".join(f"{n} {c}" for c, n in zip(classes, counts, strict=True))
    points = [p for p, _ in POINTS if any(run.at(p) for run in runs)]
    lines = [
        f"Held-out images: {len(ref.labels)} ({per_class}), from {ref.predictions}. "
        f"Intervals: 95% percentile bootstrap over the images ({N_RESAMPLES} resamples, "
        f"seed {seed}). Every threshold-dependent number is stated at one named operating "
        "point, one table each: the validation-chosen threshold (each run's own, chosen on its "
        "validation split: what it deploys), then the argmax"
        + (f" ({classes[1]} when its probability >= 0.5)" if len(classes) == 2 else "")
        + ". ROC-AUC, PR-AUC, log loss and ECE need no threshold.",
        "",
    ]
    if len(classes) > 2:
        lines += [f"{MULTICLASS_NOTE[0].upper()}{MULTICLASS_NOTE[1:]}.", ""]
    if ensemble:
        said = runs[-1].metrics["note"] or "threshold chosen on the runs' shared validation split"
        lines += [f"{runs[-1].name}: the mean of the runs' probabilities; {said}.", ""]
    lines += ["### Runs", "", _runs_table(runs), ""]
    for point in points:
        lines += [f"### Operating point: {point}", "", _point_table(runs, point), ""]
    lines += ["### Threshold-free", "", _free_table(runs), ""]
    lines += [
        f"Each run minus {ref.name}, paired (the same resampled images for both): ↑/↓ where "
        "the 95% interval excludes 0.",
        "",
    ]
    for point in points:
        lines += [f"### Differences at operating point: {point}", ""]
        lines += [_point_differences(runs, point, seed), ""]
    lines += ["### Threshold-free differences", "", _free_differences(runs, seed)]
    return "\n".join(lines) + "\n"


def _runs_table(runs: list[TestedRun]) -> str:
    rows = [["run", "model", "strategy", "epochs (best)", "train time"]]
    for run in runs:
        c, m = run.config, run.metrics
        weights = "random init" if c.get("weights") == "none" else c.get("weights", "?")
        if weights not in ("imagenet", "random init"):
            weights = Path(str(weights)).name
        model = f"{c.get('arch', '?')} ({weights})"
        strategy = str(c.get("strategy", "?"))
        rows.append([run.name, model, strategy, _epochs(m), format_seconds(m.get("train_seconds"))])
    return rows_markdown(rows)


def _point_table(runs: list[TestedRun], point: str) -> str:
    """Every threshold-dependent metric of each run at ``point``, and nothing else."""
    rows = [["run", "threshold"] + [title for _, title in POINT_COLUMNS]]
    for run in runs:
        values, ci = run.at(point) or {}, run.intervals(point)
        threshold = "0.5" if point == ARGMAX and len(run.metrics["class_names"]) == 2 else "–"
        if point == VALIDATION_THRESHOLD:
            threshold = "per fold" if run.cross_validation else format_number(run.threshold)
        if len(run.metrics["class_names"]) > 2:
            threshold = "argmax"
        cells = [run.name, threshold]
        cells += [_with_interval(values.get(k), ci.get(k)) for k, _ in POINT_COLUMNS]
        rows.append(cells)
    return rows_markdown(rows)


def _free_table(runs: list[TestedRun]) -> str:
    rows = [["run"] + [title for _, title in FREE_COLUMNS]]
    for run in runs:
        ci = run.metrics.get("ci") or {}
        rows.append(
            [run.name] + [_with_interval(run.metrics.get(k), ci.get(k)) for k, _ in FREE_COLUMNS]
        )
    return rows_markdown(rows)


def _point_differences(runs: list[TestedRun], point: str, seed: int) -> str:
    """Each run minus the first at ``point``: both runs' decisions there, on the same
    resamples (none where a run has no decisions there, e.g. a cross-validation's)."""
    ref = runs[0]
    rows = [["run"] + [f"Δ {title}" for _, title in POINT_COLUMNS]]
    for run in runs[1:]:
        a, b = ref.at(point) or {}, run.at(point) or {}
        ci: dict[str, Any] = {}
        mine, theirs = ref.decisions(point), run.decisions(point)
        if mine is not None and theirs is not None:
            k = ref.proba.shape[1]
            ci = paired_difference_ci(
                ref.labels,
                (decisions_as_proba(mine, k), 0.5 if k == 2 else None),
                (decisions_as_proba(theirs, k), 0.5 if k == 2 else None),
                seed=seed,
            )
        cells = [run.name]
        for key, _ in POINT_COLUMNS:
            x, y = a.get(key), b.get(key)
            cells.append(format_difference(None if x is None or y is None else y - x, ci.get(key)))
        rows.append(cells)
    return rows_markdown(rows)


def _free_differences(runs: list[TestedRun], seed: int) -> str:
    ref = runs[0]
    rows = [["run"] + [f"Δ {title}" for _, title in FREE_COLUMNS]]
    for run in runs[1:]:
        ci = paired_difference_ci(ref.labels, (ref.proba, None), (run.proba, None), seed=seed)
        cells = [run.name]
        for key, _ in FREE_COLUMNS:
            x, y = ref.metrics.get(key), run.metrics.get(key)
            cells.append(format_difference(None if x is None or y is None else y - x, ci.get(key)))
        rows.append(cells)
    return rows_markdown(rows)


def _epochs(m: dict[str, Any]) -> str:
    if isinstance(m.get("epochs_run"), list):  # a cross-validation: one count per fold
        return f"{len(m['epochs_run'])} folds of {max(m['epochs_run'])}"
    return f"{m.get('epochs_run', '?')} ({m.get('best_epoch', '?')})"


def format_difference(point: float | None, interval: list[float] | None) -> str:
    if point is None:
        return "–"
    text = f"{point:+.3f}"
    if interval is None:
        return text
    mark = " ↑" if interval[0] > 0 else " ↓" if interval[1] < 0 else ""
    return f"{text} [{interval[0]:+.3f}, {interval[1]:+.3f}]{mark}"


def _with_interval(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "–"
    return format_number(value) + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


# the cell formats of every transfer comparison table (``compare`` and ``seeds`` alike)


def format_number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def format_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def rows_markdown(rows: list[list[str]]) -> str:
    return "\n".join(markdown_table(rows[0], rows[1:]))
