"""Statistics against hand-computed values and SciPy's reference implementations."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from cnnlab.study.analysis import stats


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
    assert c.diff.low > 0  # consistent improvement: the interval excludes zero
    assert not c.identical


def test_wilcoxon_is_left_out_below_six_pairs():
    # with n = 5 the exact two-sided signed-rank p cannot go below 2 / 2**5 = 0.0625
    assert sps.wilcoxon([1, 2, 3, 4, 5]).pvalue == pytest.approx(0.0625)
    five = stats.paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0], [0.0] * 5)
    assert math.isnan(five.wilcoxon_pvalue) and five.t_pvalue < 0.05


def test_wilcoxon_from_six_pairs_matches_scipy():
    level = [0.90, 0.92, 0.91, 0.95, 0.93, 0.89]
    ref = [0.88, 0.91, 0.885, 0.92, 0.94, 0.87]
    c = stats.paired_comparison(level, ref)
    assert stats.MIN_WILCOXON_N == 6
    assert c.wilcoxon_pvalue == pytest.approx(sps.wilcoxon(level, ref).pvalue)
    assert c.t_pvalue == pytest.approx(sps.ttest_rel(level, ref).pvalue)


def test_paired_comparison_requires_pairs():
    with pytest.raises(ValueError):
        stats.paired_comparison([1, 2, 3], [1, 2])


@pytest.mark.parametrize(
    ("level", "ref", "mean"),
    [
        ([0.5, 0.6, 0.7], [0.4, 0.5, 0.6], 0.1),  # equal up to float rounding
        ([85.0, 86.0, 87.5], [84.0, 85.0, 86.5], 1.0),
        ([0.5, 0.6], [0.5, 0.6], 0.0),
    ],
)
def test_identical_differences_get_no_test_and_no_interval(level, ref, mean):
    """Never p = 0 with a zero-width interval: identical differences have no spread, so the t
    statistic is undefined and nothing says how the next seed would differ."""
    c = stats.paired_comparison(level, ref)
    assert c.identical and c.diff.mean == pytest.approx(mean)
    assert math.isnan(c.t_pvalue) and math.isnan(c.wilcoxon_pvalue)
    assert math.isnan(c.diff.low) and math.isnan(c.diff.high)
    assert stats.verdict(c.diff, float("nan"), margin=0.5) == stats.UNTESTABLE


def test_one_pair_gets_no_test():
    c = stats.paired_comparison([0.9], [0.8])
    assert c.n == 1 and math.isnan(c.t_pvalue) and not c.identical


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


# -- verdicts and power --------------------------------------------------------------------


def _diff(mean, low, high, n=3, std=0.5):
    return stats.Interval(n, mean, std, low, high)


@pytest.mark.parametrize(
    ("diff", "holm_p", "expected"),
    [
        (_diff(1.2, 0.7, 1.7), 0.01, stats.BETTER),
        (_diff(-2.0, -2.6, -1.4), 0.004, stats.WORSE),
        (_diff(0.1, -0.3, 0.45), 0.60, stats.EQUIVALENT),  # whole CI inside +-0.5
        (_diff(0.3, -0.4, 1.0), 0.30, stats.UNRESOLVED),  # includes 0 and +0.5
        # the unadjusted CI excludes zero, but Holm over the family does not reject
        (_diff(0.9, 0.1, 1.7), 0.08, stats.UNRESOLVED),
        # a significant change smaller than the margin is still a change
        (_diff(0.2, 0.1, 0.3), 0.01, stats.BETTER),
        (_diff(0.2, float("nan"), float("nan"), n=1, std=float("nan")), float("nan"),
         stats.UNTESTABLE),
    ],
)  # fmt: skip
def test_verdict(diff, holm_p, expected):
    assert stats.verdict(diff, holm_p, margin=0.5) == expected


def test_the_margin_decides_between_no_difference_and_unresolved():
    diff = _diff(0.1, -0.3, 0.45)
    assert stats.verdict(diff, 0.6, margin=0.5) == stats.EQUIVALENT
    assert stats.verdict(diff, 0.6, margin=0.4) == stats.UNRESOLVED
    assert stats.verdict(_diff(0.0, -0.5, 0.3), 0.9, margin=0.5) == stats.UNRESOLVED  # on the edge


def test_verdicts_from_paired_data_through_holm():
    ref = [85.0, 86.0, 84.5, 85.5]
    cases = {
        "better": [86.1, 87.2, 85.4, 86.7],  # about +1 in every seed
        "worse": [83.0, 84.1, 82.4, 83.6],  # about -2
        "same": [85.05, 85.9, 84.6, 85.45],  # within 0.1 of the reference
        "noisy": [86.5, 85.0, 85.9, 84.4],  # +0 +- 1.4
    }
    comps = {k: stats.paired_comparison(v, ref) for k, v in cases.items()}
    holm = dict(zip(comps, stats.holm([c.t_pvalue for c in comps.values()]), strict=True))
    verdicts = {k: stats.verdict(c.diff, holm[k], margin=0.5) for k, c in comps.items()}
    assert verdicts == {"better": stats.BETTER, "worse": stats.WORSE,
                        "same": stats.EQUIVALENT, "noisy": stats.UNRESOLVED}  # fmt: skip


def test_seeds_to_resolve_matches_statsmodels_ttestpower():
    from statsmodels.stats.power import TTestPower

    # observed difference larger than the margin: the observed difference is the target
    diff = _diff(0.8, -0.2, 1.8, n=3, std=0.9)
    n = stats.seeds_to_resolve(diff, margin=0.5, alpha=0.025)
    expected = TTestPower().solve_power(effect_size=0.8 / 0.9, alpha=0.025, power=0.8)
    assert n == math.ceil(expected)
    # the answer is the smallest number of seeds that reaches 80% power
    assert TTestPower().power(0.8 / 0.9, n, 0.025) >= 0.8 > TTestPower().power(0.8 / 0.9, n - 1,
                                                                                0.025)  # fmt: skip


def test_seeds_to_resolve_by_the_textbook():
    # one-sample t, d = 1, alpha 0.05 two-sided, power 0.8: 10 observations (Cohen 1988)
    assert stats.seeds_to_resolve(_diff(1.0, -1.0, 3.0, std=1.0), margin=0.5) == 10


def test_seeds_to_resolve_uses_the_margin_for_small_differences():
    # a near-zero difference: resolving it means detecting the margin, not the noise
    small = stats.seeds_to_resolve(_diff(0.05, -1.0, 1.1, std=1.0), margin=0.5)
    assert small == stats.seeds_to_resolve(_diff(0.5, -1.0, 1.1, std=1.0), margin=0.5)
    assert small > stats.seeds_to_resolve(_diff(0.05, -1.0, 1.1, std=1.0), margin=1.0)
    # noisier differences need more seeds
    assert stats.seeds_to_resolve(_diff(0.5, -1, 2, std=2.0), 0.5) > small


def _power_by_integration(effect, n, alpha):
    """The paired t-test's power from its definition, independent of SciPy's noncentral t:
    T = (Z + effect sqrt(n)) / sqrt(V / df) with Z standard normal and V chi-squared, so
    P(|T| > c) integrates two normal tails over V's density."""
    from scipy import integrate

    df, nc = n - 1, effect * math.sqrt(n)
    c = sps.t.isf(alpha / 2, df)

    def tails(v):
        s = c * math.sqrt(v / df)
        return (sps.norm.sf(s - nc) + sps.norm.cdf(-s - nc)) * sps.chi2.pdf(v, df)

    return integrate.quad(tails, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize(
    ("effect", "n", "alpha"),
    [(0.9, 12, 0.025), (1.0, 10, 0.05), (2.0, 5, 0.05 / 31), (4.2, 5, 0.05 / 31),
     (4.2, 6, 0.05 / 31), (6.0, 5, 0.05 / 62), (100.0, 2, 0.05 / 62)],
)  # fmt: skip
def test_t_test_power_matches_the_integral(effect, n, alpha):
    assert stats.t_test_power(effect, n, alpha) == pytest.approx(
        _power_by_integration(effect, n, alpha), abs=1e-6
    )


def test_seeds_to_resolve_where_statsmodels_goes_wrong():
    """A difference 4.2 standard deviations wide at alpha 0.05/31 (the v3 study's learning
    rate 0.002 against 0.004): SciPy's lower tail is NaN at 5 seeds, statsmodels' TTestPower
    says 4 seeds (power 0.38); the smallest n with 80% power is 6."""
    diff = _diff(4.2, 0.0, 8.4, n=4, std=1.0)
    n = stats.seeds_to_resolve(diff, margin=0.5, alpha=0.05 / 31)
    assert n == 6
    alpha = 0.05 / 31
    assert _power_by_integration(4.2, 6, alpha) >= 0.8 > _power_by_integration(4.2, 5, alpha)


@settings(max_examples=60, deadline=None)
@given(
    mean=st.floats(0.0, 20.0),
    std=st.floats(0.05, 5.0),
    n=st.integers(2, 8),
    family=st.integers(1, 60),
)
def test_seeds_to_resolve_is_the_smallest_n_with_the_power(mean, std, n, family):
    """Whatever the difference, the answer has 80% power and one seed fewer has not, and the
    point estimate lies inside the range its standard deviation's interval gives."""
    diff = _diff(mean, mean - 1, mean + 1, n=n, std=std)
    alpha = 0.05 / family
    k = stats.seeds_to_resolve(diff, margin=0.5, alpha=alpha)
    effect = max(mean, 0.5) / std
    if k is None:
        assert stats.t_test_power(effect, stats.MAX_SEEDS_TO_RESOLVE, alpha) < stats.POWER
        return
    assert stats.t_test_power(effect, k, alpha) >= stats.POWER
    assert k == 2 or stats.t_test_power(effect, k - 1, alpha) < stats.POWER
    low, high = stats.seeds_to_resolve_range(diff, margin=0.5, alpha=alpha)
    assert low <= k and (high is None or k <= high)


def test_seeds_to_resolve_needs_a_spread():
    assert stats.seeds_to_resolve(_diff(0.5, float("nan"), float("nan"), std=0.0), 0.5) is None
    one = stats.Interval(1, 0.5, float("nan"), float("nan"), float("nan"))
    assert stats.seeds_to_resolve(one, 0.5) is None


def test_seeds_to_resolve_a_difference_many_standard_deviations_wide():
    """statsmodels' root finder returns NaN when even two seeds have the power (the smoke
    profile met it: 2 seeds, a wide difference, a tiny spread); the answer is then 2."""
    from statsmodels.stats.power import TTestPower

    diff = _diff(20.0, -5.0, 45.0, n=2, std=0.2)
    assert stats.seeds_to_resolve(diff, margin=0.5, alpha=0.05 / 6) == 2
    assert TTestPower().power(20.0 / 0.2, 2, 0.05 / 6) >= 0.8
