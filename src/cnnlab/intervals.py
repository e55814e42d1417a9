"""Confidence intervals shared by both pipelines: the Student-t interval of a mean (a study's
seeds, :mod:`cnnlab.study.analysis.stats`; a ``--folds K`` run's folds,
:mod:`cnnlab.transfer.evaluation.crossval`), Welch's interval of a difference of two means
(two transfer recipes' seeds, :mod:`cnnlab.transfer.evaluation.seeds`) and the Wilson score
interval of a proportion (a sensitivity of 6 / 6 on the serve page, :mod:`cnnlab.serve.evidence`).

A module of its own, on SciPy alone, so that a transfer process that only summarises its folds
imports nothing of the study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for n < 2
    low: float
    high: float


def t_interval(values: Sequence[float | None], confidence: float = 0.95) -> Interval:
    """Student-t confidence interval for the mean of the values that are numbers (None and nan
    left out); nan bounds for fewer than two of them."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(0, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    if n < 2:
        return Interval(1, mean, NAN, NAN, NAN)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


def welch_interval(
    reference: Sequence[float | None], other: Sequence[float | None], confidence: float = 0.95
) -> Interval:
    """The difference of two means, ``mean(other) - mean(reference)``, with Welch's interval
    (unequal variances, Welch-Satterthwaite degrees of freedom): two recipes' seeds are
    independent samples, not pairs. ``std`` is the difference's standard error; nan bounds
    where either side has fewer than two numbers."""
    a, b = (t_interval(v, confidence) for v in (reference, other))
    if a.n == 0 or b.n == 0:
        return Interval(0, NAN, NAN, NAN, NAN)
    diff = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        return Interval(min(a.n, b.n), diff, NAN, NAN, NAN)
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(min(a.n, b.n), diff, 0.0, diff, diff)
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(min(a.n, b.n), diff, se, diff - half, diff + half)


def geometric_interval(values: Sequence[float | None], confidence: float = 0.95) -> Interval:
    """For a positive quantity such as seconds: the geometric mean with the Student-t interval
    computed on the logarithms and taken back, so both bounds stay positive and one trial
    slowed by another job stretches the upper bound, not the lower one below zero (a t
    interval of 3 seeds' epoch times read "18.4 [-0.7, 37.5] s"). ``std`` is the values'
    own standard deviation. Values that are not positive numbers are left out."""
    x = [float(v) for v in values if v is not None and not math.isnan(v) and v > 0]
    logs = t_interval([math.log(v) for v in x], confidence)
    if logs.n == 0:
        return logs
    std = float(np.std(x, ddof=1)) if len(x) > 1 else NAN
    low, high = (NAN, NAN) if math.isnan(logs.low) else (math.exp(logs.low), math.exp(logs.high))
    return Interval(logs.n, math.exp(logs.mean), std, low, high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of the proportion ``successes / n``; None for ``n == 0``.

    Wilson, not a bootstrap: a bootstrap of 6 correct out of 6 resamples only 6 / 6 and gives
    [1.000, 1.000], which reads as certain; Wilson gives [0.610, 1.000]. It keeps close to
    its nominal coverage down to a handful of images, where the normal approximation fails.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)
