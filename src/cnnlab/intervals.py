"""The Student-t confidence interval of a mean, shared by both pipelines: a study's seeds
(:mod:`cnnlab.study.analysis.stats`) and a ``--folds K`` run's folds
(:mod:`cnnlab.transfer.evaluation.crossval`).

A module of its own, on SciPy alone: the study's statistics also load statsmodels (seconds),
which a transfer process that only summarises its folds does not need.
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
