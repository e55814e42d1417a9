"""``cnnlab transfer compare``: runs tested on the same images, side by side, and each against
the first with paired bootstrap intervals.

Two runs' test metrics each carry an interval, but overlapping intervals do not mean "no
difference": both models meet the same hard and easy images, and what they share cancels in
their difference. The paired bootstrap resamples the images once per resample and measures
every run on that same draw (``cnnlab.bootstrap.paired_difference_ci``), so the interval of a
difference is as narrow as the pairing allows. A difference is marked (↑ or ↓) where its
95% interval excludes zero; nothing is corrected for the number of comparisons.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.bootstrap import N_RESAMPLES, paired_difference_ci
from cnnlab.errors import CnnlabError
from cnnlab.metrics import contract_intervals
from cnnlab.report.document import markdown_table

# metrics.json key, column title; the point value and its interval are both in metrics.json
COLUMNS = (
    ("test_accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("macro_f1", "macro-F1"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
)
# the predictions a run directory holds, in the order compare looks for them
PREDICTIONS = ("predictions_test.csv", "predictions_out_of_fold.csv", "predictions_val.csv")


@dataclass
class TestedRun:
    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    predictions: str  # the file the probabilities came from
    paths: list[str]
    labels: np.ndarray
    proba: np.ndarray

    @property
    def threshold(self) -> float | None:
        return self.metrics.get("threshold")

    def value(self, key: str) -> float | None:
        if key in ("sensitivity", "specificity") and "operating_point" in self.metrics:
            return self.metrics["operating_point"].get(key)
        return self.metrics.get(key)  # a cross-validation: the mean over folds


def load_run(run_dir: str | Path) -> TestedRun:
    """A run directory's config, metrics and held-out probabilities (one line if unusable)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CnnlabError(f"{run_dir} is not a run directory")
    found = next((run_dir / n for n in PREDICTIONS if (run_dir / n).is_file()), None)
    if found is None or not (run_dir / "metrics.json").is_file():
        raise CnnlabError(
            f"{run_dir} is not a complete transfer run (needs metrics.json and one of "
            f"{', '.join(PREDICTIONS)})"
        )
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        classes = list(metrics["class_names"])
        with found.open(newline="") as f:
            rows = list(csv.DictReader(f))
        rows = [r for r in rows if not r.get("error")]
        labels = np.asarray([classes.index(r["true"]) for r in rows], dtype=np.int64)
        proba = np.asarray([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CnnlabError(f"{run_dir}: unreadable run files ({type(e).__name__}: {e})") from e
    if not rows:
        raise CnnlabError(f"{found} holds no predictions")
    paths = [r["path"] for r in rows]
    return TestedRun(run_dir.name, config, metrics, found.name, paths, labels, proba)


def align(runs: list[TestedRun]) -> list[TestedRun]:
    """Every run's predictions in the first run's image order; refused unless all runs were
    tested on the same images with the same classes and labels."""
    first = runs[0]
    for run in runs[1:]:
        if run.metrics["class_names"] != first.metrics["class_names"]:
            raise CnnlabError(
                f"{run.name} and {first.name} have different classes "
                f"({', '.join(run.metrics['class_names'])} vs "
                f"{', '.join(first.metrics['class_names'])})"
            )
        where = {p: i for i, p in enumerate(run.paths)}
        if set(where) != set(first.paths):
            common = len(set(where) & set(first.paths))
            raise CnnlabError(
                f"{run.name} and {first.name} were tested on different images ({common} in "
                f"common of {len(first.paths)} and {len(run.paths)}): compare runs tested on "
                "the same folder"
            )
        order = np.asarray([where[p] for p in first.paths])
        if not np.array_equal(run.labels[order], first.labels):
            raise CnnlabError(f"{run.name} and {first.name} label the same images differently")
        run.paths, run.labels, run.proba = first.paths, first.labels, run.proba[order]
    return runs


def compare(run_dirs: list[str | Path], seed: int = 0) -> str:
    """The comparison as Markdown: a table of the runs, then each run against the first."""
    if len(run_dirs) < 2:
        raise CnnlabError("compare needs two or more run directories")
    runs = align([load_run(d) for d in run_dirs])
    ref = runs[0]
    classes = ref.metrics["class_names"]
    counts = np.bincount(ref.labels, minlength=len(classes))
    per_class = ", ".join(f"{n} {c}" for c, n in zip(classes, counts, strict=True))
    lines = [
        f"Held-out images: {len(ref.labels)} ({per_class}), from {ref.predictions}. "
        f"Intervals: 95% percentile bootstrap over the images ({N_RESAMPLES} resamples, "
        f"seed {seed}); sensitivity and specificity at each run's own threshold, chosen on "
        "its validation split.",
        "",
        _runs_table(runs),
        "",
        f"Each run minus {ref.name}, paired (the same resampled images for both): ↑/↓ where "
        "the 95% interval excludes 0.",
        "",
        _differences_table(runs, seed),
    ]
    return "\n".join(lines) + "\n"


def _runs_table(runs: list[TestedRun]) -> str:
    head = ["run", "model", "strategy", "epochs (best)", "train time"]
    rows = [head + [title for _, title in COLUMNS] + ["ECE"]]
    for run in runs:
        c, m = run.config, run.metrics
        weights = "random init" if c.get("weights") == "none" else c.get("weights", "?")
        if weights not in ("imagenet", "random init"):
            weights = Path(str(weights)).name
        cells = [
            run.name,
            f"{c.get('arch', '?')} ({weights})",
            str(c.get("strategy", "?")),
            _epochs(m),
            _seconds(m.get("train_seconds")),
        ]
        for key, _ in COLUMNS:
            cells.append(_with_interval(run.value(key), (m.get("ci") or {}).get(key)))
        cells.append(_number(m.get("ece")))
        rows.append(cells)
    return _markdown(rows)


def _differences_table(runs: list[TestedRun], seed: int) -> str:
    ref = runs[0]
    rows = [["run"] + [f"Δ {title}" for _, title in COLUMNS]]
    for run in runs[1:]:
        ci = contract_intervals(  # under metrics.json's names, as COLUMNS are
            paired_difference_ci(
                ref.labels, (ref.proba, ref.threshold), (run.proba, run.threshold), seed=seed
            )
        )
        cells = [run.name]
        for key, _ in COLUMNS:
            a, b = ref.value(key), run.value(key)
            cells.append(_difference(None if a is None or b is None else b - a, ci.get(key)))
        rows.append(cells)
    return _markdown(rows)


def _epochs(m: dict[str, Any]) -> str:
    if isinstance(m.get("epochs_run"), list):  # a cross-validation: one count per fold
        return f"{len(m['epochs_run'])} folds of {max(m['epochs_run'])}"
    return f"{m.get('epochs_run', '?')} ({m.get('best_epoch', '?')})"


def _difference(point: float | None, interval: list[float] | None) -> str:
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
    return _number(value) + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _markdown(rows: list[list[str]]) -> str:
    return "\n".join(markdown_table(rows[0], rows[1:]))
