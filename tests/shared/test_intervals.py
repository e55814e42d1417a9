"""Intervals shared by both pipelines: the Wilson interval of a proportion, honest at a handful
of images where a bootstrap of an all-correct sample collapses to one point; the geometric
interval of seconds, which stays positive."""

from __future__ import annotations

import math

import pytest

from cnnlab.intervals import wilson_interval


def test_six_out_of_six_is_not_certain():
    low, high = wilson_interval(6, 6)
    assert low == pytest.approx(0.6097, abs=1e-4)  # Wilson (1927), z = 1.96
    assert high == 1.0


def test_half_of_a_hundred_matches_the_published_value():
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_the_interval_narrows_as_the_sample_grows():
    widths = [high - low for low, high in (wilson_interval(9 * n, 10 * n) for n in (1, 10, 100))]
    assert widths[0] > widths[1] > widths[2]


def test_no_images_give_no_interval_and_impossible_counts_are_refused():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="between 0 and n=5"):
        wilson_interval(6, 5)


def test_geometric_interval_is_the_t_interval_of_the_logs_taken_back():
    from cnnlab.intervals import geometric_interval, t_interval

    seconds = [10.0, 11.0, 40.0]  # one seed slowed by another job
    g = geometric_interval(seconds)
    logs = t_interval([math.log(s) for s in seconds])
    assert g.n == 3
    assert g.mean == pytest.approx((10.0 * 11.0 * 40.0) ** (1 / 3))
    assert (g.low, g.high) == pytest.approx((math.exp(logs.low), math.exp(logs.high)))
    assert 0 < g.low < g.mean < g.high
    assert t_interval(seconds).low < 0 < g.low  # the t interval of the seconds themselves
    assert g.std == pytest.approx(t_interval(seconds).std)


def test_geometric_interval_leaves_out_what_is_not_a_positive_number():
    from cnnlab.intervals import geometric_interval

    assert geometric_interval([]).n == 0
    one = geometric_interval([4.0, 0.0, None, float("nan"), -1.0])
    assert (one.n, one.mean) == (1, 4.0) and math.isnan(one.low)


def test_welch_interval_is_scipys_unequal_variance_interval_of_the_difference():
    """Welch's interval, against SciPy's own ``ttest_ind(equal_var=False)``; checked on a
    textbook-sized case and on samples Hypothesis draws (sizes 2-6, different spreads)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from scipy import stats

    from cnnlab.intervals import welch_interval

    def check(reference, other):
        got = welch_interval(reference, other)
        want = stats.ttest_ind(other, reference, equal_var=False).confidence_interval(0.95)
        assert got.n == min(len(reference), len(other))
        assert got.mean == pytest.approx(sum(other) / len(other) - sum(reference) / len(reference))
        assert (got.low, got.high) == pytest.approx((want.low, want.high), rel=1e-9, abs=1e-12)

    check([0.83, 0.80, 0.88], [0.89, 0.88, 0.89])  # one spread three times the other
    sample = st.lists(st.floats(0, 1), min_size=2, max_size=6).filter(
        lambda xs: max(xs) - min(xs) > 1e-3  # SciPy gives nan for a sample without spread
    )
    settings(max_examples=60, deadline=None)(given(sample, sample)(check))()


def test_welch_interval_without_two_numbers_a_side_has_no_bounds():
    from cnnlab.intervals import welch_interval

    one = welch_interval([0.8], [0.9, 0.7, None])  # None and nan are left out, as in t_interval
    assert (one.n, round(one.mean, 12)) == (1, 0.0) and math.isnan(one.low)
    assert welch_interval([], [0.5, 0.6]).n == 0
    flat = welch_interval([0.5, 0.5], [0.7, 0.7])  # no spread on either side: the bare difference
    assert (flat.low, flat.high) == pytest.approx((0.2, 0.2))
