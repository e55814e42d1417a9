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


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    y, p = _scores(300, 2, seed=4)
    diff = B.paired_difference_ci(y, (p, 0.5), (p, 0.5), n_resamples=500)
    assert set(diff) == {*B.bootstrap_ci(y, p, 0.5, n_resamples=10)}
    assert all(interval == (0.0, 0.0) for interval in diff.values())


def test_paired_difference_equals_a_loop_over_resamples_drawn_with_the_same_seed():
    """Reference: draw the cases with the generator bootstrap uses, measure both models with
    scikit-learn on each resample, take the percentiles of the differences."""
    y, a = _scores(120, 2, seed=5)
    b = np.clip(a + np.random.default_rng(6).normal(0, 0.2, a.shape), 0, None)
    b /= b.sum(axis=1, keepdims=True)
    n_resamples = 300
    got = B.paired_difference_ci(y, (a, None), (b, None), n_resamples=n_resamples, seed=7)
    rng = np.random.default_rng(7)
    counts = np.concatenate(
        [
            B.resample_counts(len(y), min(B.BLOCK, n_resamples - start), rng)
            for start in range(0, n_resamples, B.BLOCK)
        ]
    )
    diffs = {"balanced_accuracy": [], "roc_auc": []}
    for w in counts:
        idx = np.repeat(np.arange(len(y)), w)
        auc = [skm.roc_auc_score(y[idx], p[idx, 1]) for p in (a, b)]
        bal = [skm.balanced_accuracy_score(y[idx], p[idx].argmax(1)) for p in (a, b)]
        diffs["roc_auc"].append(auc[1] - auc[0])
        diffs["balanced_accuracy"].append(bal[1] - bal[0])
    for name, values in diffs.items():
        want = np.percentile(values, [2.5, 97.5])
        assert np.allclose(got[name], want, atol=1e-12), (name, got[name], want)


def test_a_better_model_has_a_difference_interval_above_zero():
    """b is a with a fifth of its cases made right: pairing sees a narrow, positive gain,
    narrower than the interval of either model's own balanced accuracy."""
    y, a = _scores(400, 2, seed=8)
    b = a.copy()
    fixed = np.random.default_rng(9).random(len(y)) < 0.2
    b[fixed] = np.eye(2)[y[fixed]] * 0.9 + 0.05
    diff = B.paired_difference_ci(y, (a, 0.5), (b, 0.5), n_resamples=400)
    assert diff["balanced_accuracy"][0] > 0 and diff["roc_auc"][0] > 0
    own = B.bootstrap_ci(y, a, n_resamples=400)["balanced_accuracy"]
    assert diff["balanced_accuracy"][1] - diff["balanced_accuracy"][0] < own[1] - own[0]
