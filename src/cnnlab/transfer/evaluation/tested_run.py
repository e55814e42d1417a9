"""A transfer run as ``compare`` reads it: its config, metrics and held-out probabilities.

``load_run`` reads one run directory and names in one line whatever a hand edit broke;
``align`` puts several runs' predictions in one image order, refusing runs tested on
different images or classes. ``TestedRun.at`` states every threshold-dependent metric at one
named operating point (issue 24).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.metrics import binary_metrics
from cnnlab.transfer.results import ARGMAX, VALIDATION_THRESHOLD
from cnnlab.transfer.stored import read_scores

# Every threshold-dependent number is stated at one named operating point, one table per
# point, the deployed (validation-chosen) one first; no table mixes points (issue 24).
# (key in an operating-point block, column title)
POINT_COLUMNS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("macro_f1", "macro-F1"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
)
# (metrics.json key, column title): no threshold, one value per run
FREE_COLUMNS = (
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
    ("test_loss", "log loss"),
    ("ece", "ECE"),
)
# the operating points in the order compare shows them, and their metrics.json blocks
POINTS = ((VALIDATION_THRESHOLD, "operating_point"), (ARGMAX, "at_argmax"))
# top-level keys of a cross-validation's (or an older run's) metrics.json, per point
_FLAT = {
    ARGMAX: {
        "accuracy": "test_accuracy",
        "balanced_accuracy": "balanced_accuracy",
        "macro_f1": "macro_f1",
    },
    VALIDATION_THRESHOLD: {"sensitivity": "sensitivity", "specificity": "specificity"},
}
# every number compare prints or computes with, checked to be a number
NUMBERS = (
    "test_accuracy",
    "balanced_accuracy",
    "macro_f1",
    "sensitivity",
    "specificity",
    *(k for k, _ in FREE_COLUMNS),
    "train_seconds",
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

    @property
    def cross_validation(self) -> bool:
        """Out-of-fold predictions: each fold had its own threshold, so only metrics.json's
        means over folds say what the run did at its validation-chosen thresholds."""
        return "per_fold" in self.metrics or self.predictions == PREDICTIONS[1]

    def decisions(self, point: str) -> np.ndarray | None:
        """The run's class decision on each image at ``point``; None where it has none."""
        if point == ARGMAX:
            return self.proba.argmax(1) if self.proba.shape[1] > 2 else self.proba[:, 1] >= 0.5
        if self.proba.shape[1] != 2 or self.cross_validation or self.threshold is None:
            return None
        return self.proba[:, 1] >= self.threshold

    def at(self, point: str) -> dict[str, float | None] | None:
        """Every threshold-dependent metric at ``point``, from metrics.json's block where it
        holds it, else from the predictions (older runs), else the flat means (a
        cross-validation); None where the run has no such operating point."""
        block = self.metrics.get(dict(POINTS)[point])
        values: dict[str, float | None] = {}
        decided = self.decisions(point)
        if decided is not None and self.proba.shape[1] == 2 and not self.cross_validation:
            values |= binary_metrics(self.labels, decided.astype(float), 0.5)
        elif point == ARGMAX or self.proba.shape[1] == 2 and self.cross_validation:
            values |= {k: self.metrics.get(flat) for k, flat in _FLAT[point].items()}
        if isinstance(block, dict):
            values |= {k: block[k] for k, _ in POINT_COLUMNS if k in block}
        return values or None

    def intervals(self, point: str) -> dict[str, list[float] | None]:
        block = self.metrics.get(dict(POINTS)[point])
        if isinstance(block, dict) and isinstance(block.get("ci"), dict):
            return block["ci"]
        ci = self.metrics.get("ci") or {}  # a cross-validation's, or an older run's
        return {k: ci.get(flat) for k, flat in _FLAT[point].items()}


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
        paths, labels, proba = read_scores(found, classes)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CnnlabError(f"{run_dir}: unreadable run files ({type(e).__name__}: {e})") from e
    if not paths:
        raise CnnlabError(f"{found} holds no predictions")
    _check_run_files(run_dir, config, metrics, found, proba)
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
    values = {key: metrics.get(key) for key in NUMBERS}
    intervals = metrics.get("ci") or {}
    for _, key in POINTS:
        block = metrics.get(key)
        if block is not None and not isinstance(block, dict):
            raise CnnlabError(f"{where}: {key} must be an object, got {block!r:.80}")
        for name in ("threshold", *(k for k, _ in POINT_COLUMNS)):
            values[f"{key}.{name}"] = (block or {}).get(name)
        if isinstance(intervals, dict) and (block or {}).get("ci") is not None:
            inner = block["ci"]
            if not isinstance(inner, dict):
                raise CnnlabError(f"{where}: {key}.ci must be an object, got {inner!r:.80}")
            intervals = intervals | {f"{key}.{k}": v for k, v in inner.items()}
    for key, value in values.items():
        if value is not None and not _is_number(value):
            raise CnnlabError(f"{where}: {key} must be a number, got {value!r:.80}")
    threshold = metrics.get("threshold")
    if threshold is not None and not (_is_number(threshold) and 0 <= threshold <= 1):
        raise CnnlabError(f"{where}: threshold must be a number in [0, 1], got {threshold!r:.80}")
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


def ensemble_run(runs: list[TestedRun], run_dirs: list[str | Path], seed: int) -> TestedRun:
    """The mean of aligned ``runs``' held-out probabilities as one more run: its threshold
    chosen on their shared validation split (``operating.operating_point``), else the argmax
    (``metrics["note"]`` says why)."""
    from cnnlab.transfer.inference.operating import operating_point
    from cnnlab.transfer.inference.predict import metrics_of  # numpy only; its module: torch

    if any(run.cross_validation for run in runs):
        raise CnnlabError(
            "--ensemble averages one model per run: cross-validation runs (out-of-fold "
            "predictions from K models) cannot be averaged"
        )
    ref, classes = runs[0], runs[0].metrics["class_names"]
    proba = np.mean([run.proba for run in runs], axis=0)
    deployed = [(run.threshold, run.config.get("threshold_policy")) for run in runs]
    op = operating_point(run_dirs, classes, deployed)
    metrics: dict[str, Any] = dict(metrics_of(ref.labels, proba, classes, op.threshold, seed))
    if op.policy and "operating_point" in metrics:
        metrics["operating_point"]["policy"] = op.policy
    seconds = [run.metrics.get("train_seconds") for run in runs]
    metrics |= {
        "class_names": classes,
        "threshold": op.threshold,
        "threshold_policy": op.policy,
        "train_seconds": sum(seconds) if all(map(_is_number, seconds)) else None,
        "epochs_run": "–",
        "best_epoch": "–",
        "note": op.note,
    }
    config = {"arch": f"mean of {len(runs)} runs", "weights": "–", "strategy": "ensemble"}
    name = "ensemble(" + "+".join(run.name for run in runs) + ")"
    return TestedRun(name, config, metrics, ref.predictions, ref.paths, ref.labels, proba)
