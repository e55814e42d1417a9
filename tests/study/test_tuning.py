"""The learning rate a sweep chooses for the tuned trials of its level."""

import pytest

from cnnlab.study.tuning import choose_lr


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
