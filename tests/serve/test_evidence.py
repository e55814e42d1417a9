"""The serve page's rules for trusting a number: each metric with its test size and 95%
interval, a warning when the test set is too small, borderline scores, and score labels."""

from __future__ import annotations

import json

import pytest

from cnnlab.serve.evidence import (
    CALIBRATED,
    MIN_CLASS_IMAGES,
    UNCALIBRATED,
    borderline,
    headline,
    headline_html,
    score_note,
)
from cnnlab.serve.page import read_metrics


def transfer_metrics(normal: int, pneumonia: int, **extra) -> dict:
    """A binary run's metrics.json with ``normal`` and ``pneumonia`` test images."""
    return {
        "evaluated_on": "test",
        "class_names": ["NORMAL", "PNEUMONIA"],
        "test_accuracy": 0.9,
        "balanced_accuracy": 0.95,
        "macro_f1": 0.88,
        "roc_auc": None,  # undefined: left out, not "None"
        "ece": 0.224,
        "threshold": 0.533,
        "operating_point": {"sensitivity": 0.875, "specificity": 1.0},
        "per_class": [
            {"class": "NORMAL", "support": normal},
            {"class": "PNEUMONIA", "support": pneumonia},
        ],
        "ci": {"balanced_accuracy": [1.0, 1.0], "macro_f1": [0.8, 0.9]},
        "n_val": 1046,
        **extra,
    }


def rows_of(metrics: dict) -> dict:
    return {r.label: r for r in headline(metrics).rows}


def test_a_perfect_specificity_on_six_images_is_not_shown_as_certain():
    rows = rows_of(transfer_metrics(6, 24))
    specificity = rows["Specificity at threshold"]
    assert specificity.n == 6 and specificity.measured_on == "6 NORMAL images"
    assert specificity.method == "Wilson"
    assert specificity.interval[0] == pytest.approx(0.61, abs=0.01) and specificity.interval[1] == 1
    # the bootstrap's [1.000, 1.000] of so few images is withheld, with the reason
    balanced = rows["Balanced accuracy"]
    assert balanced.interval is None and "too few images (a class has 6)" in balanced.method


def test_a_small_class_or_a_wide_interval_raises_the_warning():
    warnings = headline(transfer_metrics(6, 24)).warnings
    assert any("Only 6 NORMAL images" in w for w in warnings)
    wide = [w for w in warnings if "wider than 20 percentage points" in w]
    assert len(wide) == 1 and "Specificity at threshold" in wide[0]
    assert headline(transfer_metrics(500, 500)).warnings == []


def test_a_large_test_set_shows_the_stored_bootstrap_interval_and_no_warning():
    rows = rows_of(transfer_metrics(MIN_CLASS_IMAGES, 400))
    assert rows["Macro F1"].interval == (0.8, 0.9) and rows["Macro F1"].method == "bootstrap"
    assert rows["Accuracy (most probable class)"].n == 430
    assert "ROC AUC" not in rows
    assert rows["Operating threshold"].measured_on == "1,046 validation images"


def test_the_panel_shows_value_interval_and_size_with_the_warning_first(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(transfer_metrics(6, 24)))
    panel = headline_html(read_metrics(tmp_path))
    assert panel.index('id="cnnlab-metrics-warning"') < panel.index("<table")
    assert (
        "<tr><td>Specificity at threshold</td><td>100.0%</td><td>61.0% to 100.0% (Wilson)</td>"
        "<td>6 NORMAL images</td></tr>"
    ) in panel
    assert "held-out split: test." in panel


def test_a_fashion_mnist_run_gets_wilson_intervals_from_its_per_class_supports():
    metrics = {
        "test_accuracy": 0.91,
        "macro_f1": 0.91,
        "per_class": [{"class": str(k), "support": 1000} for k in range(10)],
    }
    rows = rows_of(metrics)
    accuracy = rows["Accuracy (most probable class)"]
    assert accuracy.n == 10_000 and accuracy.interval == pytest.approx((0.904, 0.9154), abs=1e-3)
    assert rows["Macro F1"].method == "no interval stored with the run"
    assert headline(metrics).warnings == []


def test_metrics_without_test_sizes_are_not_shown_as_measured():
    h = headline({"test_accuracy": 0.9, "macro_f1": 0.9})
    assert h.rows == [] and "stores no test size per class" in h.warnings[0]


def test_absent_or_corrupt_metrics_are_said_not_fatal(tmp_path):
    assert read_metrics(tmp_path) is None
    (tmp_path / "metrics.json").write_text('{"test_accuracy": 0.9')  # truncated
    assert read_metrics(tmp_path) is None
    assert "No readable metrics.json" in headline_html(None)


@pytest.mark.parametrize(
    ("p", "threshold", "expected"),
    [
        ([0.444, 0.556], 0.533, True),  # issue 26's case: 0.023 above the threshold
        ([0.42, 0.58], 0.5, False),  # 0.08 away
        ([0.52, 0.48], 0.5, True),  # 0.02 below the threshold
        ([0.2, 0.8], 0.533, False),
        ([0.46, 0.44, 0.1], None, True),  # the argmax flips at 0.45: 0.01 away
        ([0.7, 0.2, 0.1], None, False),
    ],
)
def test_a_score_near_its_decision_boundary_is_borderline(p, threshold, expected):
    assert borderline(p, threshold) is expected


def test_scores_are_labelled_calibrated_only_when_they_are():
    assert "calibrated probabilities" in score_note(CALIBRATED, 0.03, 1.8)
    assert "T = 1.80" in score_note(CALIBRATED, 0.03, 1.8)
    uncalibrated = score_note(UNCALIBRATED, 0.224)
    assert "uncalibrated model scores (held-out ECE 0.224)" in uncalibrated
    assert "not probabilities" in uncalibrated
