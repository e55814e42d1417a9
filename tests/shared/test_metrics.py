import numpy as np
import pytest

from cnnlab.metrics import (
    binary_metrics,
    choose_threshold,
    classification_metrics,
    expected_calibration_error,
    metrics_contract,
)


def test_ece_matches_hand_computation():
    # two bins used (of 10): conf 0.95 (2 samples, 1 correct) and conf 0.55 (2 samples, 2 correct)
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55)
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(expected)


def test_ece_is_zero_for_confident_correct_predictions():
    y = np.array([0, 1, 2])
    assert expected_calibration_error(y, np.eye(3)) == pytest.approx(0.0)


def test_classification_metrics_on_a_known_confusion():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 0])
    proba = np.full((6, 3), 0.1)
    proba[np.arange(6), pred] = 0.8
    m = classification_metrics(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    per_class = {row["class"]: row for row in m["per_class"]}
    assert per_class["a"]["precision"] == pytest.approx(2 / 3)
    assert per_class["b"]["recall"] == pytest.approx(1.0)
    assert per_class["c"]["support"] == 1 and per_class["c"]["f1"] == 0.0
    assert m["loss"] == pytest.approx(-np.log(0.8) * 4 / 6 - np.log(0.1) * 2 / 6)


def test_roc_auc_undefined_when_a_class_is_missing():
    y = np.array([0, 0, 1])
    proba = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0]])
    assert classification_metrics(y, proba, ["a", "b", "c"])["roc_auc"] is None


def test_metrics_contract_uses_the_contract_keys():
    y = np.array([0, 1])
    m = metrics_contract(y, np.array([[0.7, 0.3], [0.2, 0.8]]), ["neg", "pos"])
    assert {"test_accuracy", "test_loss", "balanced_accuracy", "macro_f1", "ece"} <= set(m)
    assert "accuracy" not in m and m["test_accuracy"] == 1.0 and m["roc_auc"] == 1.0


def test_threshold_and_binary_metrics():
    y = np.array([0, 0, 0, 1, 1, 1])
    score = np.array([0.1, 0.2, 0.6, 0.55, 0.8, 0.9])
    # perfectly separable scores: J = 1 at the lowest positive score
    assert choose_threshold(y, np.array([0.1, 0.2, 0.3, 0.55, 0.8, 0.9])) == pytest.approx(0.55)
    m = binary_metrics(y, score, 0.5)
    assert m["sensitivity"] == 1.0 and m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(3 / 4) and m["npv"] == 1.0
