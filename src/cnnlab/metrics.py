"""Classification metrics shared by the Fashion-MNIST and transfer-learning pipelines.

Both pipelines write ``metrics.json`` through :func:`metrics_contract`, so a key means the same
thing everywhere. scikit-learn computes everything it offers; expected calibration error is
written here because scikit-learn has no ECE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: the bin-weighted gap between confidence and accuracy (equal-width bins)."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    # right-closed bins so that a confidence of exactly 1.0 lands in the last bin
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """Macro one-vs-rest ROC-AUC; None when a class is absent from ``y_true`` (undefined)."""
    y_true = np.asarray(y_true)
    n_classes = proba.shape[1]
    if len(np.unique(y_true)) < n_classes:
        return None
    if n_classes == 2:
        return float(skm.roc_auc_score(y_true, proba[:, 1]))
    return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Every metric cnnlab reports for predicted class probabilities ``proba`` (n x classes)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.arange(len(class_names))
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    clipped = np.clip(proba, 1e-12, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "loss": float(skm.log_loss(y_true, clipped, labels=labels)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "roc_auc": roc_auc(y_true, proba),
        "ece": expected_calibration_error(y_true, proba),
        "per_class": [
            {
                "class": name,
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
        ],
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def metrics_contract(y_true, proba, class_names) -> dict[str, Any]:
    """The ``metrics.json`` contract: accuracy and loss named ``test_*``, the rest as is."""
    m = classification_metrics(y_true, proba, class_names)
    return {"test_accuracy": m.pop("accuracy"), "test_loss": m.pop("loss"), **m}


def choose_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """Operating threshold for a binary score: the ROC point maximising Youden's J
    (sensitivity + specificity - 1), chosen on validation data, never on the test set."""
    fpr, tpr, thresholds = skm.roc_curve(np.asarray(y_true), np.asarray(score))
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV of ``score >= threshold`` (class 1 = positive)."""
    y_true = np.asarray(y_true).astype(bool)
    y_pred = np.asarray(score) >= threshold
    tp = int((y_pred & y_true).sum())
    tn = int((~y_pred & ~y_true).sum())
    fp = int((y_pred & ~y_true).sum())
    fn = int((~y_pred & y_true).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "threshold": float(threshold),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "balanced_accuracy": (ratio(tp, tp + fn) + ratio(tn, tn + fp)) / 2,
    }
