"""The Wilson interval of a proportion: honest at a handful of images, where a bootstrap of an
all-correct sample collapses to one point."""

from __future__ import annotations

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
