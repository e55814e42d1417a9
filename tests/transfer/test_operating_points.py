"""Every threshold-dependent number at one named operating point (issue 24): metrics.json,
the console summary and the report never mix the validation-chosen threshold and the argmax."""

import io

import numpy as np
import pytest
from rich.console import Console

from cnnlab.metrics import binary_metrics
from cnnlab.report import Report
from cnnlab.transfer.evaluation.report import print_summary, results_section
from cnnlab.transfer.inference.predict import metrics_of

TITLES = {
    "accuracy": "accuracy",
    "balanced accuracy": "balanced_accuracy",
    "macro-F1": "macro_f1",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}
THRESHOLD = 0.7  # far from 0.5, so the two operating points disagree on many images


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    p1 = np.clip(0.35 * labels + 0.8 * rng.random(400), 0, 1)
    proba = np.c_[1 - p1, p1]
    metrics = metrics_of(labels, proba, ["NORMAL", "PNEUMONIA"], THRESHOLD, ci_seed=0)
    return labels, p1, metrics


def test_metrics_json_names_each_operating_point_and_states_every_metric_there(scored):
    labels, p1, m = scored
    assert m["threshold_dependent_at"] == "argmax"
    assert m["operating_point"]["name"] == "validation-chosen threshold"
    assert m["at_argmax"]["name"] == "argmax"
    for block, at in ((m["operating_point"], THRESHOLD), (m["at_argmax"], 0.5)):
        expected = binary_metrics(labels, p1, at)
        for key in TITLES.values():
            assert block[key] == pytest.approx(expected[key]), key
            low, high = block["ci"][key]
            assert low <= block[key] <= high, key
    assert m["operating_point"]["balanced_accuracy"] != pytest.approx(
        m["at_argmax"]["balanced_accuracy"]
    )
    # the top level holds the argmax's figures and threshold-free ones, nothing at the threshold
    assert set(m["ci"]) == {"test_accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc"}
    assert m["balanced_accuracy"] == pytest.approx(m["at_argmax"]["balanced_accuracy"])


def _report_tables(markdown):
    """(the paragraph before, {metric title: value}) of each two-column metric table."""
    tables, before, current = [], None, None
    for line in markdown.splitlines():
        if line.startswith("| ---"):
            continue
        if line.startswith("| metric |"):
            current = {}
            tables.append((before, current))
        elif line.startswith("| ") and current is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            current[cells[0]] = float(cells[1])
        elif line.strip():
            before, current = line.strip(), None
    return tables


def test_each_report_table_holds_one_operating_point(scored):
    labels, p1, m = scored
    r = Report("t")
    results_section(r, m)
    tables = _report_tables(r.to_markdown())
    names = [before for before, _ in tables]
    assert names[0].startswith("Threshold-free")
    assert names[1].startswith("At the validation-chosen threshold 0.700")
    assert names[2].startswith("At the argmax")
    for before, table in tables:
        dependent = set(TITLES) & set(table)
        if before.startswith("Threshold-free"):
            assert not dependent and {"ROC-AUC", "PR-AUC", "log loss", "ECE"} <= set(table)
            continue
        assert dependent == set(TITLES), before
        expected = binary_metrics(labels, p1, 0.5 if "argmax" in before else THRESHOLD)
        for title, key in TITLES.items():
            assert table[title] == pytest.approx(expected[key], abs=1e-4), (before, title)


def test_the_console_summary_names_the_operating_point_of_each_line(scored):
    labels, p1, m = scored
    out = io.StringIO()
    print_summary(Console(file=out, width=1000), {**m, "evaluated_on": "test", "n_test": 400})
    lines = out.getvalue().splitlines()
    free = next(line for line in lines if "threshold-free:" in line)
    assert "ROC-AUC" in free and not any(f" {t} " in free for t in TITLES)
    at = {"validation-chosen threshold 0.700": THRESHOLD, "argmax": 0.5}
    for name, threshold in at.items():
        line = next(line for line in lines if line.strip().startswith(f"at the {name}"))
        expected = binary_metrics(labels, p1, threshold)
        for title, key in TITLES.items():
            assert f" {title} {expected[key]:.3f} [" in line, (name, title)


def test_a_multi_class_summary_says_the_argmax_is_its_only_operating_point():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 90)
    m = metrics_of(labels, rng.dirichlet(np.ones(3), 90), ["a", "b", "c"], None, ci_seed=0)
    out = io.StringIO()
    print_summary(Console(file=out, width=1000), {**m, "evaluated_on": "test", "n_test": 90})
    text = out.getvalue()
    assert "at the argmax (multi-class: the argmax is the only operating point)" in text
    assert "threshold 0." not in text and "sensitivity" not in text


def test_cross_validation_means_are_grouped_by_operating_point():
    from cnnlab.transfer.evaluation.crossval import groups

    binary = {k: 0.5 for k in ("test_accuracy", "balanced_accuracy", "macro_f1", "roc_auc")}
    binary |= {"pr_auc": 0.5, "ece": 0.1, "sensitivity": 0.7, "specificity": 0.6}
    found = dict(groups(binary))
    assert found["at each fold's validation-chosen threshold"] == ["sensitivity", "specificity"]
    assert found["at the argmax"] == ["test_accuracy", "balanced_accuracy", "macro_f1"]
    assert found["threshold-free"] == ["roc_auc", "pr_auc", "ece"]
    multi = {k: v for k, v in binary.items() if k not in ("sensitivity", "specificity")}
    labels = [label for label, _ in groups(multi)]
    assert "at the argmax (multi-class: the only operating point)" in labels


def test_the_policy_that_chose_the_threshold_is_named_beside_it():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    p1 = np.clip(0.35 * labels + 0.8 * rng.random(200), 0, 1)
    m = metrics_of(labels, np.c_[1 - p1, p1], ["N", "P"], 0.3, 0, "sensitivity=0.95")
    assert m["operating_point"]["policy"] == "sensitivity=0.95"
    out = io.StringIO()
    print_summary(Console(file=out, width=1000), {**m, "evaluated_on": "test", "n_test": 200})
    assert "at the validation-chosen threshold 0.300 (chosen on val: sensitivity=0.95)" in (
        out.getvalue()
    )
    r = Report("t")
    results_section(r, m)
    said = "chosen on the validation split as the largest threshold with sensitivity >= 0.95"
    assert said in r.to_markdown()
    # the argmax policy chooses no threshold: one operating point, nothing to mix
    m = metrics_of(labels, np.c_[1 - p1, p1], ["N", "P"], None, 0, "argmax")
    assert "operating_point" not in m
