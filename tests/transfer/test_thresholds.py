"""Threshold policies (issue 24): a target threshold meets its target on the validation scores
it was chosen on, and is the one that gives up least of the other rate; bad policies are one
line naming the flag."""

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.metrics import binary_metrics, choose_threshold
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.thresholds import choose, parse_policy


def scores(seed: int, n: int = 301):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    score = np.clip(0.3 * labels + 0.7 * rng.random(n), 0, 1).round(3)  # ties included
    return labels, score


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_a_sensitivity_target_is_met_by_the_largest_threshold_that_meets_it(seed, target):
    labels, score = scores(seed)
    threshold = choose(f"sensitivity={target}", labels, score)
    assert binary_metrics(labels, score, threshold)["sensitivity"] >= target
    higher = np.unique(score[score > threshold])
    if len(higher):  # the next higher threshold misses the target: none larger meets it
        assert binary_metrics(labels, score, higher[0])["sensitivity"] < target


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_a_specificity_target_is_met_by_the_smallest_threshold_that_meets_it(seed, target):
    labels, score = scores(seed)
    threshold = choose(f"specificity={target}", labels, score)
    assert binary_metrics(labels, score, threshold)["specificity"] >= target
    lower = np.unique(score[score < threshold])
    if len(lower):  # any lower validation score as the threshold misses the target
        assert binary_metrics(labels, score, lower[-1])["specificity"] < target


def test_youden_is_todays_choice_and_argmax_chooses_no_threshold():
    labels, score = scores(0)
    assert choose("youden", labels, score) == choose_threshold(labels, score)
    assert choose("argmax", labels, score) is None


@pytest.mark.parametrize(
    "text",
    ["bogus", "sensitivity", "sensitivity=0", "sensitivity=1.5", "specificity=nan",
     "specificity=-0.1", "sensitivity=high", "youden=0.5", "recall=0.9"],
)  # fmt: skip
def test_an_unknown_policy_or_a_target_out_of_range_is_one_line(text):
    with pytest.raises(CnnlabError, match="invalid --threshold-policy") as e:
        parse_policy(text)
    assert "\n" not in str(e.value)
    with pytest.raises(CnnlabError, match="invalid --threshold-policy"):
        TransferConfig(threshold_policy=text)


def test_a_target_no_threshold_can_meet_is_one_line():
    with pytest.raises(CnnlabError, match="no positive image"):
        choose("sensitivity=0.9", np.zeros(5), np.linspace(0, 1, 5))
    with pytest.raises(CnnlabError, match="no threshold in \\[0, 1\\] meets it"):
        choose("specificity=1", np.array([0, 0, 1]), np.array([1.0, 0.2, 0.9]))


def test_the_policy_is_saved_with_the_config():
    cfg = TransferConfig(threshold_policy="sensitivity=0.95")
    assert TransferConfig.from_dict(cfg.to_dict()).threshold_policy == "sensitivity=0.95"
    assert str(parse_policy(" Sensitivity=0.950 ")) == "sensitivity=0.95"
