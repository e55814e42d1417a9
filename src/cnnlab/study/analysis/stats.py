"""Statistics for repeated trials: pure functions over plain numbers (SciPy).

- ``t_interval``: mean, std and t confidence interval over seeds;
- ``paired_comparison``: a level vs its reference, paired by seed (difference CI, paired t,
  Wilcoxon signed-rank only from ``MIN_WILCOXON_N`` pairs);
- ``mcnemar``: exact binomial or continuity-corrected chi-squared test on discordant pairs,
  meant for one seed's pair of trials;
- ``holm``: Holm-Bonferroni step-down adjustment (SciPy offers only Benjamini-Hochberg);
- ``t_test_power`` and ``seeds_to_resolve``: a paired t-test's power, the seeds it needs, and
  their range over the interval of the standard deviation (``sd_interval``);
- ``tost_pvalue``: the equivalence test (two one-sided t-tests) at a margin;
- ``verdict``: better / worse / no difference detected / unresolved / no test possible;
- ``blocked_anova``: seed-blocked ANOVA (seed as block, no seed interaction) with partial
  omega squared.

Why these choices (issue 13, measured on the quick profile with 3 seeds): Wilcoxon with n = 3
can never go below p = 0.25; McNemar summed over seeds whose predictions correlate 0.77-0.85
gave p = 1e-32 where the paired t gave 0.056; eta squared is biased upward (0.25-0.29 expected
under no effect with those group sizes), omega squared is not (nearly); a one-way ANOVA
ignores that every level shares the seeds, so the seed-to-seed spread inflates its error term.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from cnnlab.intervals import Interval, t_interval  # shared with transfer cross-validation

NAN = float("nan")
ALPHA = 0.05
POWER = 0.8  # the conventional target when asking "how many seeds would settle it"
# Two-sided exact signed-rank p-values cannot go below 2 / 2**n: 0.0625 at n = 5, 0.031 at 6.
MIN_WILCOXON_N = 6
MAX_SEEDS_TO_RESOLVE = 10_000  # beyond it "seeds to resolve" says nothing a reader can use

BETTER, WORSE = "better", "worse"
EQUIVALENT = "no difference detected"
UNRESOLVED = "unresolved"
UNTESTABLE = "no test possible"
VERDICTS = (BETTER, WORSE, EQUIVALENT, UNRESOLVED, UNTESTABLE)


@dataclass(frozen=True)
class PairedComparison:
    n: int
    diff: Interval  # of (level - reference), paired by seed
    t_pvalue: float  # paired t-test, two-sided; nan when no test is possible
    wilcoxon_pvalue: float  # exact signed-rank test, two-sided; nan below MIN_WILCOXON_N
    identical: bool = False  # every seed gave the same difference: no variance, no test


def paired_comparison(
    level: Sequence[float], reference: Sequence[float], confidence: float = 0.95
) -> PairedComparison:
    """Compare paired samples (same seeds, same order).

    Identical differences (zero variance) get no p-value and no interval rather than p = 0
    and a zero-width interval: the t statistic is undefined, and n equal differences say
    nothing about how much the next seed would differ. Equal up to float rounding counts as
    identical, since accuracies are counts over the test set."""
    a = np.asarray(level, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    d = a - b
    n = len(d)
    if n < 2:
        return PairedComparison(n, t_interval(d, confidence), NAN, NAN)
    if np.ptp(d) <= 1e-9 * max(1.0, float(np.abs(d).max())):
        return PairedComparison(n, Interval(n, float(d.mean()), 0.0, NAN, NAN), NAN, NAN, True)
    t_p = float(stats.ttest_rel(a, b).pvalue)
    w_p = NAN
    if n >= MIN_WILCOXON_N and np.any(d != 0):
        w_p = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return PairedComparison(n, t_interval(d, confidence), t_p, w_p)


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
    """McNemar's test on discordant counts of ONE pair of trials. ``exact=None`` picks the
    exact binomial test when ``b + c < 25`` (where the chi-squared approximation is poor) and
    the continuity-corrected chi-squared test otherwise. It tests whether these two trained
    networks differ on this test set; it says nothing about another seed."""
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


# -- verdicts ------------------------------------------------------------------------------


def verdict(
    diff: Interval,
    holm_pvalue: float,
    margin: float,
    alpha: float = ALPHA,
    equivalence_pvalue: float | None = None,
) -> str:
    """The answer a student reads for one comparison.

    better / worse: the Holm-adjusted paired t-test rejects "no difference" (then the
    unadjusted CI excludes zero as well); no difference detected: the equivalence test at
    +-margin (``equivalence_pvalue``, TOST, adjusted like the t-test's p) rejects "a difference
    of at least margin"; without one, the whole 95% CI lies inside (-margin, +margin);
    unresolved: neither; no test possible: one seed, or identical differences (no interval)."""
    if diff.n < 2 or math.isnan(diff.low) or math.isnan(holm_pvalue):
        return UNTESTABLE
    if holm_pvalue < alpha:
        return BETTER if diff.mean > 0 else WORSE
    if equivalence_pvalue is not None:
        return EQUIVALENT if equivalence_pvalue < alpha else UNRESOLVED
    if -margin < diff.low and diff.high < margin:
        return EQUIVALENT
    return UNRESOLVED


def tost_pvalue(diff: Interval, margin: float) -> float:
    """Two one-sided paired t-tests (TOST) of "the true difference lies outside +-margin": the
    larger of the two one-sided p-values. Below alpha it claims equivalence at the margin;
    Holm-adjusted over a study like the difference tests, so "no difference detected" is held
    to the same standard as "better" and "worse" (issue 23)."""
    if diff.n < 2 or not diff.std > 0:
        return NAN
    se = diff.std / math.sqrt(diff.n)
    df = diff.n - 1
    p_above_lower = float(stats.t.sf((diff.mean + margin) / se, df))  # H0: true <= -margin
    p_below_upper = float(stats.t.cdf((diff.mean - margin) / se, df))  # H0: true >= +margin
    return max(p_above_lower, p_below_upper)


def sd_interval(diff: Interval, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the standard deviation of the differences (chi-squared, n - 1
    degrees of freedom): from 5 seeds it spans about 0.6x to 2.9x the estimate."""
    if diff.n < 2 or not diff.std > 0:
        return NAN, NAN
    df = diff.n - 1
    tail = (1 - confidence) / 2
    low = diff.std * math.sqrt(df / stats.chi2.ppf(1 - tail, df))
    high = diff.std * math.sqrt(df / stats.chi2.ppf(tail, df))
    return float(low), float(high)


def seeds_to_resolve_range(
    diff: Interval, margin: float, alpha: float = ALPHA, power: float = POWER
) -> tuple[int | None, int | None]:
    """``seeds_to_resolve`` at the low and the high end of the 95% interval of the standard
    deviation (``sd_interval``): a seeds-needed figure from an sd with 4 degrees of freedom is
    a point estimate of a wide range, and the report says so with this range."""
    low, high = sd_interval(diff)
    if math.isnan(low):
        return None, None
    at = [
        seeds_to_resolve(Interval(diff.n, diff.mean, sd, diff.low, diff.high), margin, alpha, power)
        for sd in (low, high)
    ]
    return at[0], at[1]


def t_test_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided one-sample t-test (a paired t-test on the differences) with ``n``
    observations to detect a true difference ``effect`` standard deviations wide: the two
    tails of the noncentral t beyond the critical value.

    Written out rather than taken from statsmodels ``TTestPower``: SciPy's ``nct.cdf`` returns
    NaN far in the lower tail (``nct.cdf(-7.2, 4, 9.4)``, SciPy 1.17), statsmodels adds that
    NaN to the upper tail, and its ``solve_power`` then lands on a wrong root: a difference
    4.2 standard deviations wide at alpha 0.05/31 came out at 4 seeds, whose power is 0.38,
    where 6 are needed. Here a NaN lower tail counts as 0: for a positive effect it is at most
    alpha/2, and SciPy gives NaN only where it is far smaller."""
    if n < 2:
        return NAN
    df = n - 1
    noncentrality = abs(effect) * math.sqrt(n)
    critical = float(stats.t.isf(alpha / 2, df))
    upper = float(stats.nct.sf(critical, df, noncentrality))
    lower = float(stats.nct.cdf(-critical, df, noncentrality))
    return upper + (lower if math.isfinite(lower) else 0.0)


def seeds_to_resolve(
    diff: Interval, margin: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Seeds (pairs) a two-sided paired t-test at level ``alpha`` needs to detect a true
    difference of max(|observed mean|, margin) with the given power, at the observed standard
    deviation of the differences: the smallest n whose ``t_test_power`` reaches ``power``
    (it grows with n), None beyond ``MAX_SEEDS_TO_RESOLVE``. The margin is the floor because a
    difference below it is not worth resolving, and with that many seeds a true difference
    near zero would give a CI of about +-0.7 margin (inside +-margin), so either way the
    comparison is settled. The variance itself is estimated from few seeds: a rough guide,
    not a promise (hence ``seeds_to_resolve_range``)."""
    if diff.n < 2 or not diff.std > 0 or margin <= 0:
        return None
    effect = max(abs(diff.mean), margin) / diff.std

    def enough(k: int) -> bool:
        return t_test_power(effect, k, alpha) >= power

    if enough(2):
        return 2
    short, long = 2, 4  # short lacks the power; double long until it has it
    while not enough(long):
        if long >= MAX_SEEDS_TO_RESOLVE:
            return None
        short, long = long, min(2 * long, MAX_SEEDS_TO_RESOLVE)
    while long - short > 1:  # bisect: short fails, long is enough
        mid = (short + long) // 2
        short, long = (short, mid) if enough(mid) else (mid, long)
    return long


# -- seed-blocked ANOVA --------------------------------------------------------------------


@dataclass(frozen=True)
class AnovaTerm:
    term: str
    df: int
    df_error: int
    f_statistic: float
    pvalue: float
    omega_squared: float  # partial omega squared (see blocked_anova)


def blocked_anova(
    rows: Sequence[Mapping[str, str]],
    values: Sequence[float],
    factors: Sequence[str],
    block: str = "seed",
) -> dict[str, AnovaTerm]:
    """ANOVA of a balanced design in which every combination of the factors' levels was run
    once per seed: main effects, two-factor interactions (``"a x b"``) and the seed as a block
    without interactions; higher-order terms stay in the residual. With one factor this is
    the repeated-measures ANOVA (seed = subject), same F and p as statsmodels ``AnovaRM``.

    Written out rather than taken from ``AnovaRM`` because omega squared needs the sums of
    squares, which ``AnovaRM`` does not return; ``AnovaRM`` is the reference in the tests.

    Partial omega squared, for a term with df_t degrees of freedom, mean square MS_t, residual
    mean square MS_E and seed (block) sums of squares SS_S / MS_S:

        omega2_p = df_t (MS_t - MS_E) / (SS_t + SS_E + SS_S + MS_S)

    Olejnik & Algina (2003), "Generalized eta and omega squared statistics", Psychological
    Methods 8(4):434-447 (repeated-measures form; also Lakens 2013, Frontiers in Psychology
    4:863, and R's MOTE::omega.partial.SS.rm). It estimates the factor's share of the variance
    of one trial's accuracy, seed-to-seed variance included, other factors left out; unlike
    eta squared it is not biased upward by noise. It is reported as computed: a negative value
    means the levels differ less than the noise alone would make them."""
    y = np.asarray(values, dtype=float)
    if len(rows) != len(y):
        raise ValueError(f"{len(rows)} rows for {len(y)} values")
    count = len({r[block] for r in rows})
    for f in factors:
        count *= len({r[f] for r in rows})
    if count != len(y) or len({tuple(r[k] for k in (*factors, block)) for r in rows}) != len(y):
        raise ValueError("the ANOVA needs every combination of levels once per seed")
    grand = y.mean()
    ss_total = float(((y - grand) ** 2).sum())

    def ss_of(keys: Sequence[str]) -> tuple[float, int]:
        groups: dict[tuple, list[float]] = {}
        for row, v in zip(rows, y, strict=True):
            groups.setdefault(tuple(row[k] for k in keys), []).append(v)
        ss_groups = sum(len(g) * (np.mean(g) - grand) ** 2 for g in groups.values())
        return float(ss_groups), len(groups)

    ss: dict[str, float] = {}
    df: dict[str, int] = {}
    for f in factors:
        ss[f], levels = ss_of([f])
        df[f] = levels - 1
    for i, a in enumerate(factors):
        for b in factors[i + 1 :]:
            ss_ab, _ = ss_of([a, b])
            ss[f"{a} x {b}"] = ss_ab - ss[a] - ss[b]
            df[f"{a} x {b}"] = df[a] * df[b]
    ss_block, blocks = ss_of([block])
    df_error = len(y) - 1 - sum(df.values()) - (blocks - 1)
    ss_error = ss_total - sum(ss.values()) - ss_block
    if df_error < 1 or blocks < 2:
        return {t: AnovaTerm(t, df[t], max(df_error, 0), NAN, NAN, NAN) for t in ss}
    ms_error = ss_error / df_error
    ms_block = ss_block / (blocks - 1)
    out = {}
    for t in ss:
        ms = ss[t] / df[t]
        if ms_error <= 1e-12 * max(ss_total, 1e-300):
            # no residual variance: F would be infinite and p = 0; nothing honest to report
            out[t] = AnovaTerm(t, df[t], df_error, NAN, NAN, NAN)
            continue
        f_stat = ms / ms_error
        omega = df[t] * (ms - ms_error) / (ss[t] + ss_error + ss_block + ms_block)
        out[t] = AnovaTerm(
            t, df[t], df_error, f_stat, float(stats.f.sf(f_stat, df[t], df_error)), omega
        )
    return out
