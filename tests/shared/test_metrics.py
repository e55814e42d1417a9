import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cnnlab.metrics import (
    at_temperature_bound,
    binary_metrics,
    choose_threshold,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    metrics_contract,
    negative_log_likelihood,
    pr_auc,
    reliability_bins,
    temperature_scaled,
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


def test_pr_auc_is_scikit_learns_average_precision():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    proba = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    proba = np.stack([1 - proba, proba], axis=1)
    assert pr_auc(y, proba) == pytest.approx(average_precision_score(y, proba[:, 1]))
    y3 = rng.integers(0, 3, 200)
    p3 = rng.dirichlet(np.ones(3), 200)
    onehot = np.eye(3)[y3]
    assert pr_auc(y3, p3) == pytest.approx(average_precision_score(onehot, p3, average="macro"))
    assert pr_auc(np.zeros(5, int), np.full((5, 2), 0.5)) is None  # no positive: undefined


def _overconfident(n=2000, temperature=4.0, seed=0):
    """Labels drawn from softmax(z), reported as softmax(z * temperature): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 1.5
    true_p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true_p])
    sharp = np.exp(z * temperature)
    return y, sharp / sharp.sum(1, keepdims=True)


def test_temperature_scaling_undoes_over_confidence():
    y, proba = _overconfident()
    t = fit_temperature(y, proba)
    assert t == pytest.approx(4.0, rel=0.15)  # the sharpening it was given
    calibrated = temperature_scaled(proba, t)
    assert negative_log_likelihood(y, calibrated) < negative_log_likelihood(y, proba) - 0.1
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, proba) / 3
    assert (calibrated.argmax(1) == proba.argmax(1)).all()  # decisions unchanged
    assert not at_temperature_bound(t)


def test_temperature_one_changes_nothing_and_separable_data_hits_the_bound():
    y, proba = _overconfident(n=50)
    assert temperature_scaled(proba, 1.0) == pytest.approx(proba)
    separable = np.eye(3)[y] * 0.6 + 0.4 / 3
    assert at_temperature_bound(fit_temperature(y, separable))


def test_reliability_bins_count_every_sample_once():
    y, proba = _overconfident(n=300)
    confidence, accuracy, count = reliability_bins(y, proba, n_bins=10)
    assert count.sum() == 300
    used = count > 0
    assert ((confidence[used] > 0) & (confidence[used] <= 1)).all()
    assert np.isnan(accuracy[~used]).all()
