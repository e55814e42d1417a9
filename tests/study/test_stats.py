"""Statistics against hand-computed values and SciPy's reference implementations."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from cnnlab.study import stats


def test_t_interval_by_hand():
    # mean 2, sd 1, n 3: half width = t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    i = stats.t_interval([1.0, 2.0, 3.0])
    assert (i.n, i.mean, i.std) == (3, 2.0, 1.0)
    assert i.low == pytest.approx(2 - 2.484138, abs=1e-6)
    assert i.high == pytest.approx(2 + 2.484138, abs=1e-6)


def test_t_interval_matches_scipy():
    x = [0.881, 0.874, 0.889, 0.879, 0.884]
    lo, hi = sps.t.interval(0.9, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    i = stats.t_interval(x, confidence=0.9)
    assert (i.low, i.high) == pytest.approx((lo, hi))


def test_t_interval_with_one_value_has_no_bounds():
    i = stats.t_interval([0.9])
    assert i.mean == 0.9 and math.isnan(i.low) and math.isnan(i.std)
    assert stats.t_interval([]).n == 0


def test_paired_comparison_by_hand_and_against_scipy():
    level = [0.90, 0.92, 0.91, 0.95]
    ref = [0.88, 0.91, 0.88, 0.92]
    # differences 0.02 0.01 0.03 0.03: mean 0.0225, sd 0.0095743, t = 4.7000, df 3
    c = stats.paired_comparison(level, ref)
    assert c.diff.mean == pytest.approx(0.0225)
    assert c.diff.std == pytest.approx(0.0095743, rel=1e-4)
    t = 0.0225 / (0.0095743 / 2)
    assert c.t_pvalue == pytest.approx(2 * sps.t.sf(t, 3), rel=1e-3)
    assert c.t_pvalue == pytest.approx(sps.ttest_rel(level, ref).pvalue)
    # exact signed-rank, 4 positive differences with ties -> scipy's reference value
    assert c.wilcoxon_pvalue == pytest.approx(sps.wilcoxon(level, ref).pvalue)
    assert c.diff.low > 0  # consistent improvement: the interval excludes zero


def test_paired_comparison_requires_pairs():
    with pytest.raises(ValueError):
        stats.paired_comparison([1, 2, 3], [1, 2])


def test_paired_comparison_constant_difference():
    c = stats.paired_comparison([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert c.t_pvalue == 0.0 and c.diff.mean == pytest.approx(0.1)
    same = stats.paired_comparison([0.5, 0.6], [0.5, 0.6])
    assert same.t_pvalue == 1.0 and math.isnan(same.wilcoxon_pvalue)


def test_mcnemar_exact_by_hand():
    # b=1, c=9: two-sided exact p = 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11/1024
    m = stats.mcnemar(1, 9)
    assert m.method == "exact"
    assert m.pvalue == pytest.approx(22 / 1024)


def test_mcnemar_chi2_by_hand():
    # b=10, c=30: (|10-30| - 1)^2 / 40 = 9.025, p = chi2.sf(9.025, 1) = 0.0026631
    m = stats.mcnemar(10, 30)
    assert m.method == "chi2"
    assert m.statistic == pytest.approx(9.025)
    assert m.pvalue == pytest.approx(0.0026631, rel=1e-4)
    assert stats.mcnemar(10, 30, exact=True).pvalue == pytest.approx(
        sps.binomtest(10, 40, 0.5).pvalue
    )


def test_mcnemar_without_discordant_pairs():
    assert stats.mcnemar(0, 0).pvalue == 1.0


def test_discordant_counts():
    ref = np.array([1, 1, 0, 0, 1], bool)
    lev = np.array([1, 0, 1, 1, 1], bool)
    assert stats.discordant_counts(ref, lev) == (1, 2)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_nan():
    # family of two: 0.4*2 = 0.8, then max(0.8, 0.5*1) = 0.8; nan is not counted in the family
    adjusted = stats.holm([0.5, float("nan"), 0.4])
    assert adjusted[0] == pytest.approx(0.8) and adjusted[2] == pytest.approx(0.8)
    assert math.isnan(adjusted[1])
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]


def test_eta_squared_by_hand():
    # groups {1,2,3} and {4,5,6}: grand 3.5, SS_between = 3*(1.5^2)*2 = 13.5, SS_total = 17.5
    one = stats.eta_squared({"a": [1, 2, 3], "b": [4, 5, 6]})
    assert one.eta_squared == pytest.approx(13.5 / 17.5)
    assert one.pvalue == pytest.approx(sps.f_oneway([1, 2, 3], [4, 5, 6]).pvalue)


def test_eta_squared_needs_two_groups():
    assert math.isnan(stats.eta_squared({"a": [1.0, 2.0]}).eta_squared)


def test_anova_eta_squared_separates_main_effects_and_interaction():
    # 2x2 design, y = 2*a + 1*b + 3*(a AND b), one replicate per cell, plus a second replicate
    rows, y = [], []
    for a in (0, 1):
        for b in (0, 1):
            for noise in (-0.1, 0.1):
                rows.append({"a": str(a), "b": str(b)})
                y.append(2 * a + b + 3 * (a * b) + noise)
    eta = stats.anova_eta_squared(rows, y, ["a", "b"])
    # by hand from the cell means 0, 1, 2, 6 (marginal means a: 0.5/4, b: 1/3.5)
    y = np.array(y)
    grand = y.mean()
    ss_total = ((y - grand) ** 2).sum()
    ss_a = 4 * ((0.5 - grand) ** 2 + (4.0 - grand) ** 2)
    ss_b = 4 * ((1.0 - grand) ** 2 + (3.5 - grand) ** 2)
    ss_cells = 2 * sum((m - grand) ** 2 for m in (0.0, 1.0, 2.0, 6.0))
    assert eta["a"] == pytest.approx(ss_a / ss_total)
    assert eta["b"] == pytest.approx(ss_b / ss_total)
    assert eta["a x b"] == pytest.approx((ss_cells - ss_a - ss_b) / ss_total)
    assert eta["a"] > eta["a x b"] > 0
