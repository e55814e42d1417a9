"""The study report as a student reads it (issue 26): takeaways in words with their numbers
first, a table of contents, factor headings in words, the overfitting lesson where the data
shows it, and a page that fits a 1,280 px window without scrolling sideways."""

import math
import re
from types import SimpleNamespace

import pytest

from cnnlab.study.analysis import stats
from cnnlab.study.analysis.stats import Interval
from cnnlab.study.analysis.takeaways import overfitting_lessons, takeaways
from cnnlab.study.report import write_report
from cnnlab.study.spec import parse_spec
from cnnlab.study.spec.words import factor_titles

BUDGET = {"train_limit": 1000, "epochs": 2, "val_size": 500}


@pytest.fixture(scope="module")
def report(finished_fake_study, tmp_path_factory):
    html = write_report(finished_fake_study["url"], "fake", tmp_path_factory.mktemp("r") / "r")
    return html


def test_factors_are_titled_in_words_from_what_they_change():
    spec = parse_spec({"budget": BUDGET, "baseline": {"schedule": "cosine"}, "factors": {
        "kernel_size": [3, 5],
        "small": {"kind": "regularization", "levels": ["none", "dropout"],
                  "budget": {"train_limit": 500, "epochs": 30}},
        "batch_size": [128, 512],
        "bs_linear": {"kind": "batch_size", "levels": [128, 512], "lr_scaling": "linear"},
        "steps": {"kind": "batch_size", "levels": [128, 512], "equal_steps": True},
        "opt": {"kind": "optimizer", "levels": ["adam", "sgd"]},
        "more_opt": {"kind": "optimizer", "levels": ["adam", "nadam"]},
    }}, default_name="w")  # fmt: skip
    assert factor_titles(spec) == {
        "kernel_size": "Kernel (filter) size",
        "small": "Regularization, 500 training images x 30 epochs",
        "batch_size": "Batch size, fixed epochs, fixed LR",
        "bs_linear": "Batch size, fixed epochs, LR scaled linearly + warm-up",
        "steps": "Batch size, equal steps, fixed LR",
        "opt": "Optimizer (opt)",  # two factors would read the same: their names tell them apart
        "more_opt": "Optimizer (more_opt)",
    }


def _analysis(diffs: dict[str, tuple[Interval, str]], spec, **cells):
    """A StudyAnalysis stand-in: comparisons of factor ``f`` against level ``none``."""
    comps = [
        SimpleNamespace(factor="f", level=lv, reference="none", diff=d, verdict=v, n=d.n,
                        family=10, seeds_needed=None, gap_diff=cells.pop(f"gap_{lv}", None))
        for lv, (d, v) in diffs.items()
    ]  # fmt: skip
    return SimpleNamespace(spec=spec, comparisons=comps, margin=0.5, cells=cells)


def _spec():
    return parse_spec({"budget": BUDGET, "factors": {
        "f": {"kind": "regularization", "levels": ["none", "dropout", "augment"],
              "reference": "none"}}},
        default_name="t")  # fmt: skip


def test_a_takeaway_names_the_best_level_with_its_difference_and_verdict():
    spec = _spec()
    a = _analysis(
        {
            "dropout": (Interval(5, 0.61, 0.2, 0.40, 0.83), stats.BETTER),
            "augment": (Interval(5, -3.09, 0.2, -3.31, -2.87), stats.WORSE),
        },
        spec,
    )
    (t,) = takeaways(a)
    assert (t.best, t.versus, t.verdict) == ("dropout", "none", stats.BETTER)
    assert t.sentence == (
        "Regularization: dropout is best; it beats none (the reference) by +0.61 points "
        "[95% CI +0.40, +0.83] of test accuracy, a difference the study can vouch for "
        "(better, after Holm correction over the study)."
    )
    # every level worse than the reference: the reference is best, against its closest rival
    a = _analysis(
        {
            "dropout": (Interval(5, -0.30, 0.2, -0.50, -0.10), stats.WORSE),
            "augment": (Interval(5, -3.09, 0.2, -3.31, -2.87), stats.WORSE),
        },
        spec,
    )
    (t,) = takeaways(a)
    assert (t.best, t.versus, t.verdict) == ("none", "dropout", stats.BETTER)
    assert (t.diff.mean, t.diff.low, t.diff.high) == (0.30, 0.10, 0.50)
    assert t.sentence.startswith("Regularization: none (the reference) is best; it beats "
                                 "dropout by +0.30 points [95% CI +0.10, +0.50]")  # fmt: skip


def _cell(gap: float, val: float, **decline) -> SimpleNamespace:
    none = dict.fromkeys(("val_drop", "val_loss_rise", "val_loss_lowest", "val_loss_best_epoch"))
    none["val_drop_window"] = 1
    return SimpleNamespace(n=5, clean_gap=True, gap=Interval(5, gap, 1.0, gap - 1, gap + 1),
                           val_accuracy=Interval(5, val, 0.5, val - 0.5, val + 0.5),
                           **{**none, **decline})  # fmt: skip


@pytest.mark.parametrize(
    ("drop", "rise", "says"),
    [
        (2.1, 0.9, "Validation accuracy falls: here overfitting costs accuracy."),
        (0.02, 1.15, "here overfitting shows in the loss and the calibration"),
        (0.18, 0.009, "Neither curve turns much: little overfitting to repair"),
    ],
)
def test_the_overfitting_lesson_says_whether_validation_actually_turns(drop, rise, says):
    """issue 23: the regime meant to overfit must show whether validation accuracy falls, or
    only the loss rises (confident mistakes), measured from the reference's curves."""
    spec = _spec()
    ref = _cell(17.8, 82.2, val_drop=Interval(5, drop, 0.1, drop - 0.1, drop + 0.1),
                val_loss_rise=Interval(5, rise, 0.1, rise - 0.1, rise + 0.1),
                val_loss_lowest=0.566, val_loss_best_epoch=6.0)  # fmt: skip
    a = _analysis({"dropout": (Interval(5, 0.1, 0.3, -0.3, 0.5), stats.UNRESOLVED),
                   "augment": (Interval(5, 0.1, 0.3, -0.3, 0.5), stats.UNRESOLVED)},
                  spec, **{"f=none": ref})  # fmt: skip
    head = overfitting_lessons(a, spec.factor("f"))[0]
    assert f"its validation loss rose from 0.566 (at epoch 6, median over seeds) by {rise:.3f}" in (
        head
    )
    assert f"validation accuracy ended {drop:.2f} points below its peak [95% CI" in head
    assert says in head and head.count("overfitting") >= 1
    ref.val_drop_window = 10  # a long run: the fall is read from 10-epoch moving averages
    head = overfitting_lessons(a, spec.factor("f"))[0]
    assert f"validation accuracy in 10-epoch moving averages ended {drop:.2f} points" in head


def test_the_overfitting_lesson_says_a_smaller_gap_is_not_a_better_model():
    """issue 26: augmentation cut the gap from about 11 to 3 points while its accuracy fell;
    the report must say what the gap plot shows, with the numbers."""
    spec = _spec()
    a = _analysis(
        {"augment": (Interval(5, -2.72, 0.2, -2.89, -2.55), stats.WORSE),
         "dropout": (Interval(5, 0.12, 0.3, -0.27, 0.50), stats.UNRESOLVED)},
        spec, gap_augment=Interval(5, -8.27, 0.7, -9.16, -7.38),
        gap_dropout=Interval(5, 3.78, 0.5, 3.10, 4.40),  # a level can widen it, too
        **{"f=none": _cell(11.42, 84.8), "f=augment": _cell(3.15, 82.05),
           "f=dropout": _cell(15.2, 84.9)},
    )  # fmt: skip
    head, augment, dropout = overfitting_lessons(a, spec.factor("f"))
    assert "96.2% accurate on its own training images and 84.8% on validation" in head
    assert "a train-validation gap of 11.42 points [95% CI 10.42, 12.42]" in head
    assert augment.startswith(
        "augment cuts the gap by 8.27 points [95% CI 7.38, 9.16] (to 3.15) even though its "
        "test accuracy drops, -2.72 points [95% CI -2.89, -2.55] (worse): its training "
        "accuracy fell from 96.2% to 85.2%"
    )
    assert "A smaller gap means less overfitting, not a better model" in augment
    assert dropout.startswith("dropout widens the gap by 3.78 points [95% CI 3.10, 4.40] (to "
                              "15.20)")  # fmt: skip
    # a gap difference whose CI reaches zero is not claimed either way
    a.comparisons[1].gap_diff = Interval(5, -0.5, 0.9, -1.6, 0.6)
    assert len(overfitting_lessons(a, spec.factor("f"))) == 2


def test_takeaways_and_contents_come_first_and_link_every_section(report):
    md = report.with_suffix(".md").read_text()
    assert md.index("## Takeaways") < md.index("**Contents**") < md.index("## Which factor")
    takeaways_text = md[: md.index("**Contents**")]
    # the study's verdicts, in words, each with its number: 7x7 costs the fake two points
    assert "Kernel (filter) size:" in takeaways_text and "95% CI" in takeaways_text
    html = report.read_text()
    links = re.findall(r'<a href="#([^"]+)">', html)
    ids = set(re.findall(r' id="([^"]+)"', html))
    assert len(links) >= 10 and set(links) <= ids
    for link in re.findall(r"\]\(#([^)]+)\)", md):  # the Markdown's links: the same anchors
        assert link in ids


def test_body_tables_keep_to_seven_columns(report):
    md = report.with_suffix(".md").read_text()
    body = md[: md.index("## Appendix A")]
    headers = [ln for ln in body.splitlines() if ln.startswith("| ") and "---" not in ln]
    widths = {ln.count(" | ") + 1 for ln in headers if ln}
    assert widths and max(widths) <= 7


@pytest.mark.browser
def test_the_report_fits_a_1280_px_window_without_scrolling_sideways(report, chromium):
    chromium.set_window_size(1280, 900)
    chromium.get(report.resolve().as_uri())
    width = chromium.execute_script("return window.innerWidth")
    scroll, client = chromium.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]"
    )
    wide = chromium.execute_script(
        "return Array.from(document.querySelectorAll('table')).filter(t => "
        "t.getBoundingClientRect().right > document.documentElement.clientWidth).length"
    )
    assert width == 1280 and not math.isnan(scroll)
    assert scroll <= client and wide == 0, (scroll, client, wide)


def test_a_factor_of_the_reference_alone_is_not_said_to_have_levels_that_cut_nothing():
    """A pilot's factor holds only its reference (the network without regularization in one
    regime): its paragraph states the gap and the curves, and no verdict on other levels."""
    spec = parse_spec({"budget": BUDGET, "factors": {
        "f": {"kind": "regularization", "levels": ["none"]}}}, default_name="t")  # fmt: skip
    a = _analysis({}, spec, **{"f=none": _cell(17.13, 82.9)})
    (head,) = overfitting_lessons(a, spec.factor("f"))
    assert "a train-validation gap of 17.13 points [95% CI 16.13, 18.13]." in head
    assert "No level" not in head and "A regularizer" not in head
    ref = {"f=none": _cell(17.13, 82.9)}
    dropout = {"dropout": (Interval(5, 0.1, 0.3, -0.3, 0.5), stats.UNRESOLVED)}
    a = _analysis(dropout, _spec(), gap_dropout=Interval(5, -0.5, 0.9, -1.6, 0.6), **ref)
    assert (
        "18.13]. No level cuts that gap measurably"
        in overfitting_lessons(a, _spec().factor("f"))[0]
    )
