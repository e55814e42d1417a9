"""Classification metrics shared by the Fashion-MNIST and transfer-learning pipelines.

Both pipelines write ``metrics.json`` through :func:`metrics_contract`, so a key means the same
thing everywhere. scikit-learn computes everything it offers; expected calibration error, the
reliability bins behind it and temperature scaling are written here because scikit-learn has
neither (its ``calibration_curve`` takes one binary score, and its calibrators refit a model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn import metrics as skm

ECE_BINS = 15

# one row of ``per_class`` in ``metrics.json`` (both pipelines); the functional form because
# ``class`` is a Python keyword
ClassMetrics = TypedDict(
    "ClassMetrics",
    {"class": str, "precision": float, "recall": float, "f1": float, "support": int},
)


class ContractMetrics(TypedDict):
    """What :func:`metrics_contract` returns: the keys every ``metrics.json`` shares."""

    test_accuracy: float
    test_loss: float
    balanced_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    roc_auc: float | None  # None when a class is absent from the split
    ece: float  # expected calibration error
    per_class: list[ClassMetrics]
    confusion_matrix: list[list[int]]


MAX_TEMPERATURE = 20.0  # temperature scaling searches T in [1 / 20, 20]


def reliability_bins(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of top-label confidence: (mean confidence, accuracy, count).
    Empty bins hold NaN and a count of 0. What a reliability diagram draws."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    # right-closed bins so that a confidence of exactly 1.0 lands in the last bin
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, correct, minlength=n_bins) / count
    return mean_confidence, accuracy, count


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Top-label ECE: the bin-weighted gap between confidence and accuracy (equal-width bins)."""
    confidence, accuracy, count = reliability_bins(y_true, proba, n_bins)
    used = count > 0
    gap = np.abs(accuracy[used] - confidence[used])
    return float((count[used] * gap).sum() / max(count.sum(), 1))


def _log_proba(proba: np.ndarray) -> np.ndarray:
    """Log-probabilities as logits: softmax ignores a per-row shift, so softmax(log p / T) is
    exactly temperature scaling of the network's logits. Clipped at float32's smallest normal
    number, where a float32 softmax underflows."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), np.finfo(np.float32).tiny, None))


def temperature_scaled(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) from the probabilities softmax(logits)."""
    return np.exp(log_softmax(_log_proba(proba) / temperature, axis=1))


def negative_log_likelihood(y_true: np.ndarray, proba: np.ndarray) -> float:
    y_true = np.asarray(y_true, dtype=np.int64)
    return float(-_log_proba(proba)[np.arange(len(y_true)), y_true].mean())


def fit_temperature(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 that minimises the negative log
    likelihood of softmax(logits / T) on held-out data (cnnlab: the validation split).

    One parameter, so the argmax, accuracy and ROC-AUC stay as they were; only confidence
    changes. Searched on log T in [1/20, 20] (SciPy's bounded Brent), where T > 1 softens an
    over-confident network. A validation split that the network separates perfectly drives T
    to the lower bound (the likelihood keeps rising as T shrinks): ``at_temperature_bound``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    logits = _log_proba(proba)
    rows = np.arange(len(y_true))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_true].mean())

    bound = np.log(MAX_TEMPERATURE)
    found = minimize_scalar(nll, bounds=(-bound, bound), method="bounded")
    return float(np.exp(found.x))


def at_temperature_bound(temperature: float) -> bool:
    """Whether ``fit_temperature`` stopped at (within 1% of) an end of its search range."""
    return not 1.01 / MAX_TEMPERATURE < temperature < MAX_TEMPERATURE / 1.01


def pr_auc(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """Average precision (area under the precision-recall curve, scikit-learn's step form):
    of class 1 for two classes, else the macro mean one-vs-rest; None when a class is absent
    from ``y_true`` (undefined, as for ROC-AUC)."""
    y_true = np.asarray(y_true)
    n_classes = proba.shape[1]
    if len(np.unique(y_true)) < n_classes:
        return None
    if n_classes == 2:
        return float(skm.average_precision_score(y_true == 1, proba[:, 1]))
    onehot = y_true[:, None] == np.arange(n_classes)[None, :]
    return float(skm.average_precision_score(onehot, proba, average="macro"))


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


def metrics_contract(y_true, proba, class_names) -> ContractMetrics:
    """The ``metrics.json`` contract: accuracy and loss named ``test_*``, the rest as is."""
    m = classification_metrics(y_true, proba, class_names)
    return {"test_accuracy": m.pop("accuracy"), "test_loss": m.pop("loss"), **m}


# bootstrap interval names -> metrics.json keys (the contract calls accuracy test_accuracy)
_CONTRACT_NAMES = {"accuracy": "test_accuracy"}


def contract_intervals(
    intervals: dict[str, tuple[float, float] | None],
) -> dict[str, list[float] | None]:
    """``cnnlab.bootstrap.bootstrap_ci`` output under ``metrics.json`` keys, as JSON lists."""
    return {
        _CONTRACT_NAMES.get(name, name): None if ci is None else [ci[0], ci[1]]
        for name, ci in intervals.items()
    }


def choose_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """Operating threshold for a binary score: the ROC point maximising Youden's J
    (sensitivity + specificity - 1), chosen on validation data, never on the test set."""
    fpr, tpr, thresholds = skm.roc_curve(np.asarray(y_true), np.asarray(score))
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Every threshold-dependent metric of the decision ``score >= threshold`` (class 1 =
    positive): sensitivity, specificity, PPV, NPV, balanced accuracy, accuracy and macro-F1,
    all at that one operating point."""
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
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        # F1 of each class, 0 where a class is neither true nor predicted (as scikit-learn)
        "macro_f1": (
            (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
            + (2 * tn / (2 * tn + fn + fp) if tn + fn + fp else 0.0)
        )
        / 2,
    }
