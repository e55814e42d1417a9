"""``cnnlab transfer compare``: runs on the same images side by side, paired differences."""

import csv
import json

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.transfer.evaluation.compare import compare
from cnnlab_testing import markdown_tables

CLASSES = ["NORMAL", "PNEUMONIA"]


def _write_run(root, name, labels, proba, order=None, classes=CLASSES, threshold=0.5):
    """A run directory as ``transfer train`` leaves it, as far as compare reads it."""
    run = root / name
    run.mkdir(parents=True)
    order = np.arange(len(labels)) if order is None else order
    with (run / "predictions_test.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "predicted", *[f"p_{c}" for c in classes], "error", "true"])
        for i in order:
            pred = classes[int(np.argmax(proba[i]))]
            w.writerow([f"/data/test/{i}.png", pred, *proba[i], "", classes[labels[i]]])
    decided = (proba[:, 1] >= (threshold or 0.5)).astype(int)
    metrics = {
        "test_accuracy": float(np.mean(proba.argmax(1) == labels)),
        "balanced_accuracy": float(
            np.mean([np.mean(proba[labels == c].argmax(1) == c) for c in (0, 1)])
        ),
        "class_names": classes,
        "threshold": threshold,
        "operating_point": {
            "threshold": threshold,
            "sensitivity": float(np.mean(decided[labels == 1] == 1)),
            "specificity": float(np.mean(decided[labels == 0] == 0)),
        },
        "ci": {"test_accuracy": [0.1, 0.9]},
        "ece": 0.05,
        "epochs_run": 3,
        "best_epoch": 2,
        "train_seconds": 75.4,
    }
    if threshold is None:  # a multi-class run has no threshold
        del metrics["operating_point"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = {"arch": "efficientnet_lite0", "weights": "imagenet", "strategy": name}
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    weak = np.clip(np.eye(2)[labels] * 0.3 + rng.random((300, 2)), 1e-3, None)
    weak /= weak.sum(1, keepdims=True)
    strong = weak.copy()
    fixed = rng.random(300) < 0.3
    strong[fixed] = np.eye(2)[labels[fixed]] * 0.8 + 0.1
    return tmp_path, labels, weak, strong


def _row(text, first_cell):
    return next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))


def test_a_better_run_is_marked_up_and_the_rows_are_paired_by_path(pair):
    root, labels, weak, strong = pair
    a = _write_run(root, "head", labels, weak)
    shuffled = np.random.default_rng(1).permutation(len(labels))
    b = _write_run(root, "full", labels, strong, order=shuffled)
    text = compare([a, b])
    assert "Held-out images: 300" in text and "2000 resamples" in text
    assert "| head | efficientnet_lite0 (imagenet) | head | 3 (2) | 1 min 15 s |" in text
    cells = _row(text.split("Each run minus")[1], "full").split(" | ")
    balanced = cells[2]
    assert balanced.startswith("+") and balanced.endswith("↑"), balanced
    same = compare([a, _write_run(root, "again", labels, weak, order=shuffled)])
    assert "+0.000 [+0.000, +0.000]" in _row(same.split("Each run minus")[1], "again")


def test_runs_on_other_images_or_classes_are_refused_in_one_line(pair, capsys):
    root, labels, weak, _ = pair
    a = _write_run(root, "a", labels, weak)
    fewer = _write_run(root, "fewer", labels[:-1], weak[:-1])
    other = _write_run(root, "other", labels, weak, classes=["x", "y"])
    relabelled = _write_run(root, "relabelled", 1 - labels, weak)
    empty = root / "empty"
    empty.mkdir()
    cases = [
        ([a], "two or more run directories"),
        ([a, fewer], "were tested on different images (299 in common of 300 and 299)"),
        ([a, other], "different classes"),
        ([a, relabelled], "label the same images differently"),
        ([a, empty], "is not a complete transfer run"),
        ([a, root / "missing"], "is not a run directory"),
    ]
    for runs, message in cases:
        with pytest.raises(SystemExit) as e:
            main(["transfer", "compare", *map(str, runs)])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and message in err[0], (message, err)


def test_out_writes_what_is_printed_and_refuses_a_directory(pair, capsys):
    root, labels, weak, strong = pair
    runs = [str(_write_run(root, "a", labels, weak)), str(_write_run(root, "b", labels, strong))]
    main(["transfer", "compare", *runs, "--out", str(root / "cmp.md")])
    assert (root / "cmp.md").read_text() == capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["transfer", "compare", *runs, "--out", str(root)])
    assert e.value.code == 2 and "is a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_a_trained_run_compared_with_itself_differs_by_nothing(trained_run):
    text = compare([trained_run, trained_run])
    differences = text.split("Each run minus")[1]
    assert differences.count("+0.000 [+0.000, +0.000]") >= 5


THRESHOLD_DEPENDENT_TITLES = {
    "accuracy",
    "balanced accuracy",
    "macro-F1",
    "sensitivity",
    "specificity",
}


def _tables(text):
    """``markdown_tables``, and every table has a heading."""
    tables = markdown_tables(text)
    assert None not in tables, f"a table with no heading: {tables.get(None)}"
    return tables


def test_no_table_mixes_operating_points(pair):
    """Each threshold-dependent cell equals its metric at its table's declared operating
    point (runs at thresholds 0.3 and 0.7, so the argmax differs from both), the deployed
    point first, and the runs and threshold-free tables hold no threshold-dependent column."""
    from cnnlab.metrics import binary_metrics

    root, labels, weak, strong = pair
    runs = {"low": (weak, 0.3), "high": (strong, 0.7)}
    dirs = [_write_run(root, n, labels, p, threshold=t) for n, (p, t) in runs.items()]
    text = compare(dirs)
    tables = _tables(text)
    headings = list(tables)
    assert headings.index("Operating point: validation-chosen threshold") < headings.index(
        "Operating point: argmax"
    )
    for heading, (header, rows) in tables.items():
        dependent = THRESHOLD_DEPENDENT_TITLES & {h.removeprefix("Δ ") for h in header}
        if "operating point" not in heading.lower():
            assert not dependent, (heading, header)
            continue
        assert dependent == THRESHOLD_DEPENDENT_TITLES, (heading, header)
        if heading.startswith("Differences"):
            continue
        for row in rows:
            proba, threshold = runs[row[0]]
            at = 0.5 if heading.endswith("argmax") else threshold
            assert row[1] == ("0.5" if at == 0.5 else f"{at:.3f}")
            expected = binary_metrics(labels, proba[:, 1], at)
            keys = ["accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "specificity"]
            for key, cell in zip(keys, row[2:], strict=True):
                assert float(cell.split()[0]) == pytest.approx(expected[key], abs=6e-4), (
                    heading,
                    row[0],
                    key,
                )
    differences = tables["Differences at operating point: validation-chosen threshold"][1]
    high, low = (binary_metrics(labels, p[:, 1], t) for p, t in (runs["high"], runs["low"]))
    assert float(differences[0][4].split()[0]) == pytest.approx(
        high["sensitivity"] - low["sensitivity"], abs=6e-4
    )


def test_tested_run_states_each_metric_at_the_point_asked(pair):
    from cnnlab.metrics import binary_metrics
    from cnnlab.transfer.evaluation.tested_run import load_run
    from cnnlab.transfer.results import ARGMAX, VALIDATION_THRESHOLD

    root, labels, weak, _ = pair
    run = load_run(_write_run(root, "r", labels, weak, threshold=0.3))
    for point, at in ((VALIDATION_THRESHOLD, 0.3), (ARGMAX, 0.5)):
        expected = binary_metrics(labels, weak[:, 1], at)
        got = run.at(point)
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "specificity"):
            assert got[key] == pytest.approx(expected[key], abs=1e-9), (point, key)


def test_a_multi_class_comparison_has_only_the_argmax(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 90)
    proba = rng.dirichlet(np.ones(3), 90)
    classes = ["a", "b", "c"]
    dirs = [_write_run(tmp_path, n, labels, proba, classes=classes, threshold=None) for n in "xy"]
    text = compare(dirs)
    assert "Multi-class: the argmax is the only operating point" in text
    assert "Operating point: argmax" in _tables(text)
    assert not any("validation-chosen" in h for h in _tables(text))
