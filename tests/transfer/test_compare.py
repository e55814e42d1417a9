"""``cnnlab transfer compare``: runs on the same images side by side, paired differences."""

import csv
import json

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.transfer.evaluation.compare import compare

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
    decided = (proba[:, 1] >= threshold).astype(int)
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


def test_a_trained_run_compared_with_itself_differs_by_nothing(trained_run):
    text = compare([trained_run, trained_run])
    differences = text.split("Each run minus")[1]
    assert differences.count("+0.000 [+0.000, +0.000]") >= 5
