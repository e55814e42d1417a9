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
