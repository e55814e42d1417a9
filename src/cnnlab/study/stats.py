"""Statistics for repeated trials: pure functions over plain numbers, computed with SciPy.

- ``t_interval``: mean, std and t confidence interval over seeds;
- ``paired_comparison``: a level vs its reference, paired by seed (difference CI, paired t,
  Wilcoxon signed-rank);
- ``mcnemar``: exact binomial or continuity-corrected chi-squared test on discordant pairs;
- ``holm``: Holm-Bonferroni step-down adjustment (SciPy offers only Benjamini-Hochberg);
- ``eta_squared`` / ``anova_eta_squared``: share of variance explained by a factor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t confidence interval for the mean (nan bounds for fewer than two values)."""
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


@dataclass(frozen=True)
class PairedComparison:
    n: int
    diff: Interval  # of (level - reference), paired by seed
    t_pvalue: float  # paired t-test, two-sided
    wilcoxon_pvalue: float  # exact signed-rank test for small n, two-sided


def paired_comparison(
    level: Sequence[float], reference: Sequence[float], confidence: float = 0.95
) -> PairedComparison:
    """Compare paired samples (same seeds, same order)."""
    a = np.asarray(level, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    d = a - b
    n = len(d)
    interval = t_interval(d, confidence)
    if n < 2:
        return PairedComparison(n, interval, NAN, NAN)
    # zero variance: t is undefined; an all-equal nonzero difference is as clear as it gets
    constant = bool(np.all(d == d[0]))
    t_p = (1.0 if d[0] == 0 else 0.0) if constant else float(stats.ttest_rel(a, b).pvalue)
    w_p = NAN if np.all(d == 0) else float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return PairedComparison(n, interval, t_p, w_p)


@dataclass(frozen=True)
class McNemar:
    b: int  # reference right, level wrong
    c: int  # reference wrong, level right
    statistic: float
    pvalue: float
    method: str  # "exact" or "chi2"


def discordant_counts(reference_correct: np.ndarray, level_correct: np.ndarray) -> tuple[int, int]:
    ref = np.asarray(reference_correct, dtype=bool)
    lev = np.asarray(level_correct, dtype=bool)
    return int((ref & ~lev).sum()), int((~ref & lev).sum())


def mcnemar(b: int, c: int, exact: bool | None = None) -> McNemar:
    """McNemar's test on discordant counts. ``exact=None`` picks the exact binomial test when
    ``b + c < 25`` (where the chi-squared approximation is poor) and the continuity-corrected
    chi-squared test otherwise."""
    n = b + c
    if exact is None:
        exact = n < 25
    if n == 0:
        return McNemar(b, c, 0.0, 1.0, "exact" if exact else "chi2")
    if exact:
        p = float(stats.binomtest(min(b, c), n, 0.5).pvalue)
        return McNemar(b, c, float(min(b, c)), min(p, 1.0), "exact")
    chi2 = (abs(b - c) - 1) ** 2 / n
    return McNemar(b, c, float(chi2), float(stats.chi2.sf(chi2, 1)), "chi2")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order; nan entries are left out of the
    family and stay nan."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclass(frozen=True)
class OneWay:
    eta_squared: float  # SS_between / SS_total
    f_statistic: float
    pvalue: float


def eta_squared(groups: Mapping[str, Sequence[float]]) -> OneWay:
    """One-way decomposition: how much of the spread of all values is explained by the group
    (level) they belong to, with the ANOVA F-test of 'all level means are equal'."""
    arrays = [np.asarray(v, dtype=float) for v in groups.values() if len(v)]
    if len(arrays) < 2:
        return OneWay(NAN, NAN, NAN)
    allv = np.concatenate(arrays)
    grand = allv.mean()
    ss_total = float(((allv - grand) ** 2).sum())
    ss_between = float(sum(len(a) * (a.mean() - grand) ** 2 for a in arrays))
    eta = ss_between / ss_total if ss_total > 0 else NAN
    if all(len(a) >= 2 for a in arrays) and len(allv) > len(arrays):
        f, p = stats.f_oneway(*arrays)
        f, p = float(f), float(p)
    else:
        f, p = NAN, NAN
    return OneWay(eta, f, p)


def anova_eta_squared(
    rows: Sequence[Mapping[str, str]], values: Sequence[float], factors: Sequence[str]
) -> dict[str, float]:
    """Variance decomposition of a balanced factorial design: eta squared of every main effect
    and every two-factor interaction (``"a x b"``); higher-order terms stay in the residual."""
    y = np.asarray(values, dtype=float)
    grand = y.mean()
    ss_total = float(((y - grand) ** 2).sum())
    if ss_total == 0:
        return {f: NAN for f in factors}

    def ss_of(keys: Sequence[str]) -> float:
        groups: dict[tuple, list[float]] = {}
        for row, v in zip(rows, y, strict=True):
            groups.setdefault(tuple(row[k] for k in keys), []).append(v)
        return float(sum(len(g) * (np.mean(g) - grand) ** 2 for g in groups.values()))

    out = {f: ss_of([f]) / ss_total for f in factors}
    for i, a in enumerate(factors):
        for b in factors[i + 1 :]:
            ss_ab = ss_of([a, b]) - ss_of([a]) - ss_of([b])
            out[f"{a} x {b}"] = max(ss_ab, 0.0) / ss_total
    return out
