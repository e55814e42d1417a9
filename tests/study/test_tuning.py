"""The learning rate a sweep chooses for the tuned trials of its level, and the rates its
bracketing rounds try."""

import pytest

from cnnlab.study.tuning import (
    INTERIOR,
    LOWER_EDGE,
    SINGLE,
    UPPER_EDGE,
    bracket_position,
    choose_lr,
    probe_lr,
)


def test_the_rate_with_the_best_mean_over_seeds_is_chosen():
    # 0.01 has the single best trial, 0.003 the best mean
    sweep = [(0.001, 0.80), (0.001, 0.81), (0.003, 0.86), (0.003, 0.86), (0.01, 0.90),
             (0.01, 0.70)]  # fmt: skip
    choice = choose_lr(sweep)
    assert choice["chosen"] == 0.003
    assert [c["lr"] for c in choice["candidates"]] == [0.001, 0.003, 0.01]
    assert [c["n"] for c in choice["candidates"]] == [2, 2, 2]
    assert choice["candidates"][0]["val_accuracy"] == pytest.approx(0.805)


def test_a_tie_goes_to_the_smaller_rate():
    assert choose_lr([(0.03, 0.85), (0.01, 0.85)])["chosen"] == 0.01


def test_an_empty_sweep_chooses_nothing():
    with pytest.raises(ValueError):
        choose_lr([])


def _choice(rates_and_accuracies):
    return choose_lr(rates_and_accuracies)


def test_a_best_rate_at_the_top_edge_is_extended_upwards_by_the_grid_step():
    choice = _choice([(0.01, 0.80), (0.03, 0.84), (0.09, 0.86)])
    assert bracket_position(choice) == UPPER_EDGE
    assert probe_lr(choice) == pytest.approx(0.27)


def test_a_best_rate_at_the_bottom_edge_is_extended_downwards():
    choice = _choice([(0.01, 0.86), (0.03, 0.84), (0.1, 0.80)])
    assert bracket_position(choice) == LOWER_EDGE
    assert probe_lr(choice) == pytest.approx(0.01 / 3)


def test_an_interior_best_rate_is_refined_towards_its_better_neighbour():
    choice = _choice([(0.01, 0.80), (0.03, 0.86), (0.09, 0.84)])
    assert bracket_position(choice) == INTERIOR
    assert probe_lr(choice) == pytest.approx((0.03 * 0.09) ** 0.5)
    choice = _choice([(0.01, 0.85), (0.03, 0.86), (0.09, 0.84)])
    assert probe_lr(choice) == pytest.approx((0.03 * 0.01) ** 0.5)


def test_one_rate_has_no_edge_to_extend():
    choice = _choice([(0.01, 0.8)])
    assert bracket_position(choice) == SINGLE
    with pytest.raises(ValueError):
        probe_lr(choice)
