"""Evaluation you can trust, end to end: small trainings (resnet18, random init, 32 px)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from sklearn.metrics import average_precision_score

from cnnlab.cli import main
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.pipeline import train

CFG = TransferConfig(weights="none", image_size=32, batch_size=16)
PERSON = r"person(\d+)_"

pytestmark = pytest.mark.slow


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _train(data, out, cfg):
    console = Console(file=io.StringIO(), width=200)
    run_dir, metrics = train(data, out, cfg, console=console)
    return run_dir, metrics, console.file.getvalue()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, make_patients):
    """Defaults but --calibrate --positive a, `full`, 3 epochs: train/ (48 images) and val/,
    no test/. Two images per class of val/ look like the other class, so no network separates
    validation perfectly and the temperature is identifiable."""
    base = tmp_path_factory.mktemp("calibrated")
    make_patients(base / "data" / "train", {"a": list(range(24)), "b": list(range(24, 48))})
    val = {"a": list(range(50, 56)), "b": list(range(56, 62))}
    make_patients(base / "data" / "val", val, seed=1, mislabelled=2)
    data = base / "data"
    cfg = CFG.replace(strategy="full", epochs=3, calibrate=True, positive="a")
    return _train(data, base / "run", cfg)


def test_final_metrics_come_from_a_carved_test_split(calibrated):
    run_dir, m, console = calibrated
    assert m["evaluated_on"] == "test split carved from train"
    splits = _rows(run_dir / "splits.csv")
    assert sum(r["split"] == "test" for r in splits) == m["n_test"] == 8  # 15% of 48, rounded up
    assert m["n_train"] == 40 and m["n_val"] == 12
    assert len(_rows(run_dir / "predictions_test.csv")) == m["n_test"]
    assert "test split carved from train, 8 images" in console and "optimistic" not in console


def test_pr_auc_and_intervals_of_the_held_out_split(calibrated):
    run_dir, m, console = calibrated
    rows = _rows(run_dir / "predictions_test.csv")
    truth = [r["true"] == "a" for r in rows]  # a is the positive class
    assert m["pr_auc"] == pytest.approx(
        average_precision_score(truth, [float(r["p_a"]) for r in rows])
    )
    expected = {"test_accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc"}
    assert set(m["ci"]) == expected  # the argmax's and the threshold-free ones
    for key, (low, high) in m["ci"].items():
        assert low <= m[key] <= high, key
    dependent = {"accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "specificity"}
    for block in (m["operating_point"], m["at_argmax"]):  # each at its own operating point
        assert set(block["ci"]) == dependent
        for key, (low, high) in block["ci"].items():
            assert low <= block[key] <= high, (block["name"], key)
    assert "2000 resamples" in m["ci_method"]
    low, high = m["ci"]["balanced_accuracy"]
    assert f"balanced accuracy {m['balanced_accuracy']:.3f} [{low:.3f}, {high:.3f}]" in console
    html = (run_dir / "report.html").read_text()
    assert "Precision-recall" in html and "95% interval" in html and "Reliability" in html
    assert "At the validation-chosen threshold" in html and "Threshold-free" in html


def test_positive_class_sets_the_operating_point(calibrated):
    run_dir, m, _ = calibrated
    assert m["class_names"] == ["b", "a"] and m["positive_class"] == "a"
    rows = _rows(run_dir / "predictions_test.csv")
    called = np.array([float(r["p_a"]) >= m["threshold"] for r in rows])
    is_a = np.array([r["true"] == "a" for r in rows])
    assert m["operating_point"]["sensitivity"] == pytest.approx(called[is_a].mean())
    assert m["operating_point"]["specificity"] == pytest.approx((~called[~is_a]).mean())
    assert all(r["decision"].startswith(r["predicted_at_threshold"] + " (P(a)=") for r in rows)


def test_calibration_is_fitted_on_validation_and_saved_in_best_pt(calibrated):
    run_dir, m, console = calibrated
    c = m["calibration"]
    assert c["applied"] and c["fitted_on"] == "val" and c["temperature"] != 1.0
    assert c["val"]["nll_after"] < c["val"]["nll_before"]  # what T minimised, where it was fit
    assert set(c["held_out"]) == {"ece_before", "ece_after", "nll_before", "nll_after"}
    raw = torch.load(run_dir / "best.pt", weights_only=True)
    assert raw["extra"]["temperature"] == c["temperature"]
    assert "temperature" not in torch.load(run_dir / "last.pt", weights_only=True)["extra"]
    assert f"calibration: temperature {c['temperature']:.3f}" in console


def test_predict_prints_and_writes_the_decision_at_the_threshold(calibrated, capsys, tmp_path):
    run_dir, m, _ = calibrated
    image = _rows(run_dir / "predictions_test.csv")[0]["path"]
    main(["transfer", "predict", str(run_dir), image, "--out", str(tmp_path / "p.csv")])
    line = capsys.readouterr().out.splitlines()[0]
    row = _rows(tmp_path / "p.csv")[0]
    want = re.escape(f"threshold {m['threshold']:.3f})")
    assert re.search(r"decision [ab] \(P\(a\)=\d\.\d{3} (>=|<) " + want, line), line
    assert row["decision"] in line


def test_test_size_0_reports_on_validation_with_a_warning(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"x": 12, "y": 12})
    cfg = CFG.replace(test_size=0.0, epochs=1)
    run_dir, m, console = _train(data, tmp_path / "run", cfg)
    assert m["evaluated_on"] == "val" and m["n_test"] == 0
    assert "warning: --test-size 0 left no test split" in console and "optimistic" in console
    assert "they are optimistic" in (run_dir / "report.html").read_text()


def test_three_folds_give_three_results_and_their_mean_with_an_interval(tmp_path, make_patients):
    ids = [p for p in range(24) for _ in range(2)]  # 24 patients, two images each
    data = make_patients(tmp_path / "data", {"a": ids[:24], "b": ids[24:]})
    cfg = CFG.replace(folds=3, epochs=1, group_regex=PERSON)
    run_dir, m, console = _train(data, tmp_path / "run", cfg)
    assert m["folds"] == 3 and len(m["per_fold"]) == 3
    for k in (1, 2, 3):
        fold = json.loads((run_dir / f"fold_{k}" / "metrics.json").read_text())
        assert fold["evaluated_on"] == f"fold {k} of 3" and "ci" in fold
        assert fold["balanced_accuracy"] == m["per_fold"][k - 1]["balanced_accuracy"]
        assert (run_dir / f"fold_{k}" / "best.pt").is_file()
    values = [f["balanced_accuracy"] for f in m["per_fold"]]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(values))
    low, high = m["ci"]["balanced_accuracy"]
    assert low <= m["balanced_accuracy"] <= high and "Student-t" in m["ci_method"]
    assert "3-fold cross-validation" in console and (run_dir / "report.html").is_file()
    tested = _rows(run_dir / "predictions_out_of_fold.csv")
    assert sorted(r["path"] for r in tested) == sorted(str(p) for p in data.rglob("*.png"))
    fold_of = {}
    for r in _rows(run_dir / "splits.csv"):
        patient = re.search(PERSON, r["path"]).group(1)
        assert fold_of.setdefault(patient, r["fold"]) == r["fold"]  # a patient, one fold
    # transfer compare reads a cross-validation's out-of-fold predictions and mean metrics
    from cnnlab.transfer.evaluation.compare import compare

    text = compare([run_dir, run_dir])
    assert "from predictions_out_of_fold.csv" in text and "| 3 folds of 1 |" in text
    assert f"| {m['balanced_accuracy']:.3f} [{low:.3f}, {high:.3f}] |" in text
    assert "+0.000 [+0.000, +0.000]" in text.split("Each run minus")[1]


def test_evaluate_gives_intervals_pr_auc_and_the_new_plots(calibrated, tmp_path, capsys):
    run_dir, m, _ = calibrated
    held = tmp_path / "held"
    for r in _rows(run_dir / "predictions_test.csv"):
        (held / r["true"]).mkdir(parents=True, exist_ok=True)
        source = Path(r["path"])
        (held / r["true"] / source.name).write_bytes(source.read_bytes())
    main(["transfer", "evaluate", str(run_dir), str(held), "--out", str(tmp_path / "ev")])
    got = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert got["pr_auc"] == pytest.approx(m["pr_auc"]) and set(got["ci"]) == set(m["ci"])
    assert {"precision_recall.png", "reliability.png"} <= {
        p.name for p in (tmp_path / "ev").iterdir()
    }
    assert "balanced accuracy" in capsys.readouterr().out
