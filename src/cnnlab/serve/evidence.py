"""How much the serve page's numbers can be trusted: each headline metric with its test size and
95% interval, when a test set is too small to say anything, and when one image's score is
borderline. Framework-free (no Gradio, torch or TensorFlow), so every rule is tested in
milliseconds.

The rules, stated once here and in docs/serve.md:

- **Intervals.** A proportion whose counts the run stores (accuracy over the test images,
  sensitivity over the positive ones, specificity over the negative ones) gets a Wilson score
  interval from those counts: a bootstrap of 6 / 6 gives [1.000, 1.000], Wilson [0.610,
  1.000]. Other metrics (balanced accuracy, macro F1, ROC AUC) show the run's stored
  bootstrap interval, except when a class has fewer than :data:`MIN_CLASS_IMAGES` test
  images: a percentile bootstrap of so few images collapses and looks certain, so the page
  says "too few images" instead.
- **Too small to say anything.** The page warns when a class has fewer than
  :data:`MIN_CLASS_IMAGES` test images, or a shown interval is wider than
  :data:`MAX_INTERVAL_WIDTH` (20 points: "somewhere between 70% and 90%" decides nothing).
- **Borderline.** A score within :data:`BORDERLINE_MARGIN` of the decision boundary: for a
  binary run, ``|P(positive) - threshold| < 0.05``; without a threshold, half the gap between
  the two most probable classes (where the argmax would flip) below 0.05.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnlab.intervals import wilson_interval

MIN_CLASS_IMAGES = 30  # the usual floor for a per-class rate to mean something
MAX_INTERVAL_WIDTH = 0.20
BORDERLINE_MARGIN = 0.05

CALIBRATED = "calibrated probability"
UNCALIBRATED = "uncalibrated model score"


@dataclass(frozen=True)
class MetricRow:
    """One headline number: its value, what it was measured on, and its 95% interval."""

    label: str
    value: float
    n: int | None  # images it was measured on
    # of the held-out split the panel names: "624 images", "234 NORMAL images"; the threshold
    # "1,046 validation images"
    measured_on: str
    interval: tuple[float, float] | None = None
    method: str = ""  # "Wilson", "bootstrap", or why no interval is shown
    percent: bool = True

    def record(self) -> dict[str, Any]:
        """As the page's API returns it."""
        low, high = self.interval if self.interval else (None, None)
        return {
            "metric": self.label,
            "value": self.value,
            "n": self.n,
            "measured_on": self.measured_on,
            "ci95": None if self.interval is None else [low, high],
            "ci_method": self.method,
        }


@dataclass(frozen=True)
class Headline:
    """The run's headline metrics, and the warnings that go with them."""

    split: str
    rows: list[MetricRow] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "evaluated_on": self.split,
            "test_images_per_class": self.class_counts,
            "metrics": [r.record() for r in self.rows],
            "warnings": self.warnings,
        }


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _counts(metrics: dict[str, Any]) -> dict[str, int]:
    """Test images per class, from ``per_class`` supports (both pipelines store them)."""
    counts = {}
    for row in metrics.get("per_class") or []:
        if isinstance(row, dict) and isinstance(row.get("support"), int):
            counts[str(row.get("class"))] = row["support"]
    return counts


def _proportion(label: str, value: float, n: int, what: str) -> MetricRow:
    """A rate over ``n`` images, its count recovered from the stored rate, Wilson interval."""
    ci = wilson_interval(min(n, max(0, round(value * n))), n)
    return MetricRow(label, value, n, f"{n:,} {what}", ci, "Wilson")


def _bootstrap(
    label: str, value: float, ci: Any, n: int, smallest: int, percent: bool
) -> MetricRow:
    measured = f"{n:,} images"
    if smallest < MIN_CLASS_IMAGES:
        why = f"too few images (a class has {smallest}) for a bootstrap interval"
        return MetricRow(label, value, n, measured, None, why, percent)
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(_finite(v) is not None for v in ci):
        return MetricRow(
            label, value, n, measured, (float(ci[0]), float(ci[1])), "bootstrap", percent
        )
    return MetricRow(label, value, n, measured, None, "no interval stored with the run", percent)


def headline(metrics: dict[str, Any]) -> Headline:
    """The rows of the page's metrics panel from a run's ``metrics.json`` (either pipeline)."""
    split = str(metrics.get("evaluated_on", "test"))
    counts = _counts(metrics)
    n = sum(counts.values())
    smallest = min(counts.values(), default=0)
    stored = metrics.get("ci") if isinstance(metrics.get("ci"), dict) else {}
    rows: list[MetricRow] = []
    if (acc := _finite(metrics.get("test_accuracy"))) is not None and n:
        rows.append(_proportion("Accuracy (most probable class)", acc, n, "images"))
    for key, label, percent in (
        ("balanced_accuracy", "Balanced accuracy", True),
        ("macro_f1", "Macro F1", False),
        ("roc_auc", "ROC AUC", False),
    ):
        if (value := _finite(metrics.get(key))) is not None and n:
            rows.append(_bootstrap(label, value, stored.get(key), n, smallest, percent))
    if (ece := _finite(metrics.get("ece"))) is not None and n:
        no_ci = "no interval computed"
        rows.append(
            MetricRow("ECE (calibration error)", ece, n, f"{n:,} images", None, no_ci, False)
        )
    rows += _operating_point(metrics, counts)
    return Headline(split, rows, counts, too_small(counts, rows))


def _operating_point(metrics: dict[str, Any], counts: dict[str, int]) -> list[MetricRow]:
    """The threshold and the sensitivity and specificity there (binary transfer runs)."""
    names = metrics.get("class_names")
    point = metrics.get("operating_point")
    threshold = _finite(metrics.get("threshold"))
    if threshold is None or not isinstance(point, dict) or not isinstance(names, list):
        return []
    if len(names) != 2 or not all(c in counts for c in names):
        return []
    negative, positive = names
    n_val = metrics.get("n_val")
    chosen = f"{n_val:,} validation images" if isinstance(n_val, int) else "validation images"
    rows = [MetricRow("Operating threshold", threshold, None, chosen, None, "chosen", False)]
    for key, cls in (("sensitivity", positive), ("specificity", negative)):
        value = _finite(point.get(key))
        if value is not None and counts[cls]:
            label = f"{key.capitalize()} at threshold"
            rows.append(_proportion(label, value, counts[cls], f"{cls} images"))
    return rows


def too_small(counts: dict[str, int], rows: Sequence[MetricRow]) -> list[str]:
    """Why this test set is too small to say anything (empty when it is not)."""
    if not counts:
        return [
            "This run's metrics.json stores no test size per class, so no metric can be "
            "shown with its test size and interval."
        ]
    warnings = [
        f"Only {n} {cls} image{'' if n == 1 else 's'} in the test set (fewer than "
        f"{MIN_CLASS_IMAGES}): the figures for this class say little."
        for cls, n in counts.items()
        if n < MIN_CLASS_IMAGES
    ]
    wide = [
        r.label for r in rows if r.interval and r.interval[1] - r.interval[0] > MAX_INTERVAL_WIDTH
    ]
    if wide:
        warnings.append(
            f"95% interval wider than {MAX_INTERVAL_WIDTH * 100:.0f} percentage points for: "
            f"{', '.join(wide)}. "
            "The test set is too small to pin these down."
        )
    return warnings


def _shown(value: float, percent: bool) -> str:
    return f"{value:.1%}" if percent else f"{value:.3f}"


def headline_html(metrics: dict[str, Any] | None) -> str:
    """The metrics panel: value, 95% interval and test size of each, warnings first."""
    if metrics is None:
        return '<p class="cnnlab-note">No readable metrics.json in this run directory.</p>'
    h = headline(metrics)
    split = html.escape(h.split)
    out = [f"<h3>Headline metrics</h3><p>Measured once on the held-out split: {split}.</p>"]
    if h.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in h.warnings)
        out.append(
            '<div class="cnnlab-warning" id="cnnlab-metrics-warning" role="alert">'
            f"<strong>Test set too small to say much.</strong><ul>{items}</ul></div>"
        )
    body = []
    for r in h.rows:
        if r.interval:
            low, high = (_shown(v, r.percent) for v in r.interval)
            ci = f"{low} to {high} ({r.method})"
        else:
            ci = f'<span class="cnnlab-none">{html.escape(r.method)}</span>'
        body.append(
            f"<tr><td>{html.escape(r.label)}</td><td>{_shown(r.value, r.percent)}</td>"
            f"<td>{ci}</td><td>{html.escape(r.measured_on)}</td></tr>"
        )
    out.append(
        '<table class="cnnlab-metrics"><thead><tr><th>Metric</th><th>Value</th>'
        "<th>95% interval</th><th>Measured on</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    return "".join(out)


def borderline(p: Sequence[float], threshold: float | None) -> bool:
    """Whether a score lies within :data:`BORDERLINE_MARGIN` of its decision boundary."""
    if threshold is not None and len(p) == 2:
        return abs(float(p[1]) - threshold) < BORDERLINE_MARGIN
    first, second = sorted((float(v) for v in p), reverse=True)[:2]
    return (first - second) / 2 < BORDERLINE_MARGIN


def score_note(kind: str, ece: float | None, temperature: float | None = None) -> str:
    """One sentence for the page: what the score is, and how far to trust it as a probability."""
    measured = "" if ece is None else f" (held-out ECE {ece:.3f})"
    if kind == CALIBRATED:
        return (
            f"Scores are calibrated probabilities: temperature scaling (T = {temperature:.2f}) "
            f"was fitted on validation data{measured}."
        )
    return (
        f"Scores are uncalibrated model scores{measured}, not probabilities: a score of 0.9 "
        "need not be right 9 times out of 10."
    )
