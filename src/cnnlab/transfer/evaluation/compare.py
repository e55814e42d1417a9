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
        if not isinstance(config, dict) or not isinstance(metrics, dict):
            bad = "config.json" if not isinstance(config, dict) else "metrics.json"
            raise CnnlabError(f"{run_dir / bad}: must hold a JSON object (edited by hand?)")
        classes = _class_names(run_dir, metrics.get("class_names"))
        with found.open(newline="") as f:
            rows = list(csv.DictReader(f))
        rows = [r for r in rows if not r.get("error")]
        labels = np.asarray([classes.index(r["true"]) for r in rows], dtype=np.int64)
        proba = np.asarray([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CnnlabError(f"{run_dir}: unreadable run files ({type(e).__name__}: {e})") from e
    if not rows:
        raise CnnlabError(f"{found} holds no predictions")
    _check_run_files(run_dir, config, metrics, found, proba)
    paths = [r["path"] for r in rows]
    return TestedRun(run_dir.name, config, metrics, found.name, paths, labels, proba)


def _class_names(run_dir: Path, names: Any) -> list[str]:
    if not (
        isinstance(names, list)
        and len(names) >= 2
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == len(names)
    ):
        raise CnnlabError(
            f"{run_dir / 'metrics.json'}: class_names must be a list of two or more distinct "
            f"names, got {names!r:.80}"
        )
    return names


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_run_files(
    run_dir: Path, config: dict, metrics: dict, found: Path, proba: np.ndarray
) -> None:
    """What a hand edit can break, named in one line: every number compare prints or
    computes with is a number (``"0.5"`` or ``"high"`` gave tracebacks), the threshold a
    probability, and the predictions finite probabilities (NaN and inf passed silently)."""
    where = run_dir / "metrics.json"
    point = metrics.get("operating_point")
    if point is not None and not isinstance(point, dict):
        raise CnnlabError(f"{where}: operating_point must be an object, got {point!r:.80}")
    values = {key: metrics.get(key) for key in (*(k for k, _ in COLUMNS), "ece", "train_seconds")}
    values |= {f"operating_point.{k}": v for k, v in (point or {}).items()}
    for key, value in values.items():
        if value is not None and not _is_number(value):
            raise CnnlabError(f"{where}: {key} must be a number, got {value!r:.80}")
    threshold = metrics.get("threshold")
    if threshold is not None and not (_is_number(threshold) and 0 <= threshold <= 1):
        raise CnnlabError(f"{where}: threshold must be a number in [0, 1], got {threshold!r:.80}")
    intervals = metrics.get("ci") or {}
    for key, interval in intervals.items() if isinstance(intervals, dict) else [("ci", intervals)]:
        if not (
            isinstance(interval, list) and len(interval) == 2 and all(map(_is_number, interval))
        ):
            raise CnnlabError(f"{where}: ci.{key} must be [low, high], got {interval!r:.80}")
    if not np.isfinite(proba).all() or (proba < 0).any() or (proba > 1).any():
        raise CnnlabError(f"{found}: probabilities must be finite numbers in [0, 1] (NaN or inf?)")


def align(runs: list[TestedRun]) -> list[TestedRun]:
    """Every run's predictions in the first run's image order; refused unless all runs were
    tested on the same images with the same classes and labels."""
    first = runs[0]
    for run in runs[1:]:
        names, first_names = run.metrics["class_names"], first.metrics["class_names"]
        if names != first_names and sorted(names) == sorted(first_names):
            raise CnnlabError(
                f"{run.name} and {first.name} list the same classes in a different order "
                f"({', '.join(names)} vs {', '.join(first_names)}), so their positive "
                "classes differ: compare runs trained with the same class order"
            )
        if names != first_names:
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
