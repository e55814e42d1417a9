"""Bootstrap confidence intervals for classification metrics, vectorised with NumPy.

A held-out split of a few hundred images gives a balanced accuracy that can move by several
points with another draw of patients; ``bootstrap_ci`` says by how much. It resamples the
cases (images) with replacement and reports the 2.5th and 97.5th percentiles of each metric
over the resamples: the *percentile* interval.

Why written here and not ``scipy.stats.bootstrap``: SciPy calls the statistic once per
resample (or on a stack of resampled copies), so ROC-AUC and average precision would sort
every resample again. Here a resample is a row of multiplicities (how often each case was
drawn); every metric of a block of resamples is then a matrix product (confusion matrices)
or a cumulative sum over the cases sorted once (ROC-AUC, average precision). Each kernel is
checked against scikit-learn with ``sample_weight`` in ``tests/shared/test_bootstrap.py``.

Why percentile and not BCa: BCa needs a jackknife, one more evaluation of every metric per
case (thousands per split), for a correction that matters mostly for small or skewed samples.
The percentile interval is the one most papers report; it can be a little narrow for small
splits and metrics near 0 or 1, which the reports say.

Resamples draw cases, not classes: class counts vary from resample to resample as they would
in a new sample of patients. A resample that lacks a class leaves ROC-AUC and average
precision undefined for it; such resamples are left out of those two intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

N_RESAMPLES = 2000
LEVEL = 0.95
BLOCK = 256  # resamples computed together: memory stays at a few BLOCK x n arrays
METHOD = "percentile bootstrap"

Interval = tuple[float, float]


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_resamples x n`` multiplicities: row b counts how often each case was drawn."""
    draws = rng.integers(0, n, size=(n_resamples, n))
    flat = draws + (np.arange(n_resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


# -- metrics of weighted samples: one value per row of multiplicities -------------------------


def confusion_counts(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, k: int):
    """``B x k x k`` confusion matrices (rows true, columns predicted) of each resample."""
    n = len(y_true)
    # sparse: one non-zero per case, so many classes cost no n x k^2 dense matrix
    cell = sparse.csr_matrix((np.ones(n), (np.arange(n), y_true * k + y_pred)), shape=(n, k * k))
    return np.asarray((cell.T @ weights.T).T).reshape(-1, k, k)


def accuracy(cm: np.ndarray) -> np.ndarray:
    return np.trace(cm, axis1=1, axis2=2) / cm.sum(axis=(1, 2))


def balanced_accuracy(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present, as scikit-learn computes it."""
    support = cm.sum(axis=2)
    diagonal = np.diagonal(cm, axis1=1, axis2=2)
    recall = np.divide(diagonal, support, out=np.full(support.shape, np.nan), where=support > 0)
    return np.nanmean(recall, axis=1)


def macro_f1(cm: np.ndarray) -> np.ndarray:
    """Mean F1 over every class, 0 where a class is neither true nor predicted (zero_division)."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denominator = cm.sum(axis=2) + cm.sum(axis=1)  # 2 tp + fn + fp
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    return f1.mean(axis=1)


def sensitivity(cm: np.ndarray) -> np.ndarray:
    """Recall of class 1 in a 2 x 2 confusion matrix."""
    return _ratio(cm[:, 1, 1], cm[:, 1].sum(axis=1))


def specificity(cm: np.ndarray) -> np.ndarray:
    """Recall of class 0 in a 2 x 2 confusion matrix."""
    return _ratio(cm[:, 0, 0], cm[:, 0].sum(axis=1))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(np.shape(a), np.nan), where=b > 0)


@dataclass(frozen=True)
class Ranking:
    """One score (e.g. the probability of one class) sorted once, for every resample.

    Cases are sorted by ascending score and cut into blocks of tied scores; only blocks that
    hold a positive matter. For each of them, ``*_start``/``*_end`` count the positives (p)
    and negatives (q) sorted before the block and through it.
    """

    positives: np.ndarray  # case indices, in ascending score order
    negatives: np.ndarray
    p_start: np.ndarray
    p_end: np.ndarray
    q_start: np.ndarray
    q_end: np.ndarray


def ranking(positive: np.ndarray, score: np.ndarray) -> Ranking:
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    is_pos = np.asarray(positive, dtype=bool)[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], len(order)]
    block = np.cumsum(np.r_[True, ranked[1:] != ranked[:-1]]) - 1
    held = np.unique(block[is_pos])  # blocks holding at least one positive
    p, q = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
    return Ranking(
        order[p],
        order[q],
        np.searchsorted(p, starts[held]),
        np.searchsorted(p, ends[held]),
        np.searchsorted(q, starts[held]),
        np.searchsorted(q, ends[held]),
    )


def _running_sums(weights: np.ndarray, cases: np.ndarray) -> np.ndarray:
    """``out[:, j]``: the weight of the first j of ``cases``, per row (``out[:, 0]`` = 0)."""
    out = np.zeros((len(weights), len(cases) + 1))
    np.cumsum(weights[:, cases], axis=1, out=out[:, 1:])
    return out


def auc_and_average_precision(weights: np.ndarray, r: Ranking) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of each row of multiplicities, from two running sums.

    ROC-AUC in its Mann-Whitney form: P(score of a positive > score of a negative), ties
    counting one half. Average precision as scikit-learn defines it: over the thresholds at
    which recall grows (the blocks holding a positive), recall gain x precision, precision
    counting every case scored at or above the block.
    """
    pos, neg = _running_sums(weights, r.positives), _running_sums(weights, r.negatives)
    n_pos, n_neg = pos[:, -1:], neg[:, -1:]
    gain = pos[:, r.p_end] - pos[:, r.p_start]  # positives tied in each block
    lower, upper = neg[:, r.q_start], neg[:, r.q_end]  # negatives below, and below or tied
    auc = _ratio((gain * (lower + upper)).sum(axis=1) / 2, (n_pos * n_neg)[:, 0])
    tp, fp = n_pos - pos[:, r.p_start], n_neg - lower  # scored at or above the block
    precision = np.divide(tp, tp + fp, out=np.zeros(tp.shape), where=tp + fp > 0)
    ap = _ratio((gain * precision).sum(axis=1), n_pos[:, 0])
    return auc, ap


# -- intervals ----------------------------------------------------------------------------------


def bootstrap_ci(
    y_true: np.ndarray,
    proba: np.ndarray,
    threshold: float | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Interval | None]:
    """Percentile intervals of accuracy, balanced accuracy, macro-F1, ROC-AUC and PR-AUC
    (average precision; class 1 for two classes, else macro one-vs-rest) of the argmax of
    ``proba``; with two classes and a ``threshold``, also of sensitivity and specificity of
    ``proba[:, 1] >= threshold``. The same arguments and seed always give the same intervals;
    None where no resample defines the metric."""
    (values,) = resampled_metrics(y_true, [(proba, threshold)], n_resamples, seed)
    return {name: percentile_interval(v, level) for name, v in values.items()}


def decisions_as_proba(decided: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Fixed class decisions as one-hot "probabilities": their argmax is the decision (and,
    for two classes, so is ``column 1 >= 0.5``), so :func:`bootstrap_ci` and
    :func:`paired_difference_ci` measure every threshold-dependent metric at one operating
    point. Their ROC-AUC and PR-AUC are those of the decisions, not of the scores: ignore them."""
    return np.eye(n_classes)[np.asarray(decided, dtype=np.int64)]


def decision_ci(
    y_true: np.ndarray,
    decided: np.ndarray,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Interval | None]:
    """Intervals of accuracy, balanced accuracy, macro-F1, sensitivity and specificity of two-
    class decisions ``decided`` (0/1), all at the one operating point that made them; the same
    seed draws the same resamples as :func:`bootstrap_ci`."""
    ci = bootstrap_ci(y_true, decisions_as_proba(decided), 0.5, n_resamples, seed, level)
    return {name: v for name, v in ci.items() if name not in ("roc_auc", "pr_auc")}


def paired_difference_ci(
    y_true: np.ndarray,
    reference: tuple[np.ndarray, float | None],
    other: tuple[np.ndarray, float | None],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Interval | None]:
    """Percentile intervals of ``other`` minus ``reference`` for each metric of
    ``bootstrap_ci``, two models' (probabilities, threshold) on the same cases: each resample
    draws the cases once and measures both models on them, so what the models share (the
    cases' difficulty) cancels and the interval is narrower than two separate ones suggest."""
    ref, oth = resampled_metrics(y_true, [reference, other], n_resamples, seed)
    return {name: percentile_interval(oth[name] - ref[name], level) for name in ref}


def resampled_metrics(
    y_true: np.ndarray,
    models: list[tuple[np.ndarray, float | None]],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """For each model's (probabilities, threshold), every metric of ``bootstrap_ci`` on each
    of ``n_resamples`` resamples of the cases, the same resamples for every model."""
    y_true = np.asarray(y_true, dtype=np.int64)
    scored = [_Scored(y_true, np.asarray(p, dtype=np.float64), t) for p, t in models]
    rng = np.random.default_rng(seed)
    values: list[dict[str, list[np.ndarray]]] = [{} for _ in models]
    for start in range(0, n_resamples, BLOCK):
        w = resample_counts(len(y_true), min(BLOCK, n_resamples - start), rng).astype(np.float64)
        for model, out in zip(scored, values, strict=True):
            for name, v in model.metrics(w).items():
                out.setdefault(name, []).append(v)
    return [{name: np.concatenate(v) for name, v in out.items()} for out in values]


class _Scored:
    """One model's predictions on the cases, ready to be measured on resampled weights."""

    def __init__(self, y_true: np.ndarray, proba: np.ndarray, threshold: float | None):
        self.y_true, self.k = y_true, proba.shape[1]
        self.y_pred = proba.argmax(axis=1)
        columns = [1] if self.k == 2 else range(self.k)  # class 1, else one-vs-rest
        self.rankings = [ranking(y_true == c, proba[:, c]) for c in columns]
        self.decided = None
        if threshold is not None and self.k == 2:
            self.decided = (proba[:, 1] >= threshold).astype(np.int64)

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        cm = confusion_counts(w, self.y_true, self.y_pred, self.k)
        auc, ap = np.mean([auc_and_average_precision(w, r) for r in self.rankings], axis=0)
        block = {
            "accuracy": accuracy(cm),
            "balanced_accuracy": balanced_accuracy(cm),
            "macro_f1": macro_f1(cm),
            "roc_auc": auc,  # macro means: undefined (NaN) when a class is missing
            "pr_auc": ap,
        }
        if self.decided is not None:
            at = confusion_counts(w, self.y_true, self.decided, 2)
            block |= {"sensitivity": sensitivity(at), "specificity": specificity(at)}
        return block


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> Interval | None:
    """The central ``level`` of the finite values; None when there are none."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
