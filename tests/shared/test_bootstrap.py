"""Bootstrap intervals: each vectorised kernel agrees with scikit-learn, intervals behave."""

import numpy as np
import pytest
from sklearn import metrics as skm

from cnnlab import bootstrap as B
from cnnlab.metrics import classification_metrics, pr_auc


def _scores(n: int, k: int, seed: int, decimals: int | None = 1):
    """Labels and probabilities of a fair classifier; rounded logits give tied scores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    if decimals is not None:
        logits = np.round(logits, decimals)
    proba = np.exp(logits)
    return y, proba / proba.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (2, 1), (3, 2), (5, 3)])
def test_weighted_kernels_equal_scikit_learn_with_sample_weights(k, seed):
    y, proba = _scores(300, k, seed)
    pred = proba.argmax(1)
    weights = B.resample_counts(len(y), 4, np.random.default_rng(seed)).astype(float)
    cm = B.confusion_counts(weights, y, pred, k)
    for b, w in enumerate(weights):
        assert B.accuracy(cm)[b] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w))
        assert B.balanced_accuracy(cm)[b] == pytest.approx(
            skm.balanced_accuracy_score(y, pred, sample_weight=w)
        )
        assert B.macro_f1(cm)[b] == pytest.approx(
            skm.f1_score(y, pred, average="macro", labels=range(k), sample_weight=w)
        )
    for c in range(k):
        auc, ap = B.auc_and_average_precision(weights, B.ranking(y == c, proba[:, c]))
        for b, w in enumerate(weights):
            assert auc[b] == pytest.approx(skm.roc_auc_score(y == c, proba[:, c], sample_weight=w))
            assert ap[b] == pytest.approx(
                skm.average_precision_score(y == c, proba[:, c], sample_weight=w)
            )


def test_sensitivity_and_specificity_count_class_1_as_positive():
    y = np.array([1, 1, 1, 0, 0])
    decided = np.array([1, 1, 0, 0, 1])
    cm = B.confusion_counts(np.ones((1, 5)), y, decided, 2)
    assert B.sensitivity(cm)[0] == pytest.approx(2 / 3)
    assert B.specificity(cm)[0] == pytest.approx(1 / 2)


def test_intervals_contain_the_point_estimates():
    y, proba = _scores(400, 3, 7, decimals=None)
    point = classification_metrics(y, proba, ["a", "b", "c"]) | {"pr_auc": pr_auc(y, proba)}
    ci = B.bootstrap_ci(y, proba, seed=3)
    assert set(ci) == {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc"}
    for name, (low, high) in ci.items():
        assert low < point[name] < high, name


def test_accuracy_interval_matches_the_normal_approximation_on_1000_cases():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 1000)
    correct = rng.random(1000) < 0.8
    pred = np.where(correct, y, 1 - y)
    proba = np.stack([1 - pred, pred], axis=1) * 0.8 + 0.1
    p = correct.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / 1000)  # about 0.025
    low, high = B.bootstrap_ci(y, proba, seed=0)["accuracy"]
    assert low == pytest.approx(p - half, abs=0.005)
    assert high == pytest.approx(p + half, abs=0.005)


def test_intervals_narrow_as_the_sample_grows():
    small = B.bootstrap_ci(*_scores(200, 2, 5), seed=0)
    large = B.bootstrap_ci(*_scores(3200, 2, 5), seed=0)
    for name in ("accuracy", "roc_auc", "pr_auc"):
        ratio = (large[name][1] - large[name][0]) / (small[name][1] - small[name][0])
        assert 0.15 < ratio < 0.4, name  # 16 times the cases: about a quarter of the width


def test_the_same_seed_gives_the_same_intervals_and_another_seed_others():
    y, proba = _scores(300, 2, 9)
    assert B.bootstrap_ci(y, proba, 0.5, seed=4) == B.bootstrap_ci(y, proba, 0.5, seed=4)
    assert B.bootstrap_ci(y, proba, 0.5, seed=4) != B.bootstrap_ci(y, proba, 0.5, seed=5)


def test_operating_point_intervals_need_two_classes_and_a_threshold():
    y, proba = _scores(300, 2, 1)
    assert "sensitivity" not in B.bootstrap_ci(y, proba)
    ci = B.bootstrap_ci(y, proba, threshold=0.5)
    decided = proba[:, 1] >= 0.5
    sensitivity = decided[y == 1].mean()
    specificity = (~decided[y == 0]).mean()
    assert ci["sensitivity"][0] < sensitivity < ci["sensitivity"][1]
    assert ci["specificity"][0] < specificity < ci["specificity"][1]
    assert "sensitivity" not in B.bootstrap_ci(*_scores(300, 3, 1), threshold=0.5)


def test_a_class_absent_from_the_sample_leaves_ranking_intervals_undefined():
    y, proba = _scores(100, 3, 2)
    y[y == 2] = 0
    ci = B.bootstrap_ci(y, proba)
    assert ci["roc_auc"] is None and ci["pr_auc"] is None
    assert ci["accuracy"] is not None


def test_percentile_interval_ignores_undefined_resamples():
    values = np.r_[np.linspace(0, 1, 101), np.nan, np.inf]
    assert B.percentile_interval(values) == pytest.approx((0.025, 0.975))
    assert B.percentile_interval(np.array([np.nan])) is None
