"""What a student takes away, in plain words, each claim with its number and 95% CI.

One row per factor: its best level, how far that level is from the level it was compared
with (the reference, or, where the reference is best, its closest challenger), and the
verdict of that comparison. The report opens with these sentences and ``study run`` ends
with them as a table, so both say the same; every word is chosen from the numbers (a verdict
decides "beats" or "cannot tell"), never written beside them by hand.

The overfitting lesson (issue 26: a section headlined "augment -3.73 worse" while its own
gap plot showed augmentation cutting the overfitting gap from about 14 to 4 points) is stated
wherever a regularizer's paired gap difference excludes zero, with what happened to accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.study.analysis import stats
from cnnlab.study.spec.words import factor_titles

if TYPE_CHECKING:
    from cnnlab.study.analysis.summaries import Comparison, StudyAnalysis
    from cnnlab.study.spec import Factor

_FLIP = {stats.BETTER: stats.WORSE, stats.WORSE: stats.BETTER}


@dataclass(frozen=True)
class Takeaway:
    factor: str  # the spec's name
    title: str  # the factor in words
    best: str  # the level with the highest paired mean test accuracy
    versus: str  # the level it is compared with
    reference: str
    diff: stats.Interval  # best - versus, test accuracy points, paired by seed
    verdict: str  # of best against versus
    seeds_needed: int | None
    sentence: str


def _negated(i: stats.Interval) -> stats.Interval:
    return stats.Interval(i.n, -i.mean, i.std, -i.high, -i.low)


def _ci(i: stats.Interval) -> str:
    if math.isnan(i.low):
        return f"{i.mean:+.2f} points (no interval: {i.n} seed{'s' * (i.n != 1)})"
    return f"{i.mean:+.2f} points [95% CI {i.low:+.2f}, {i.high:+.2f}]"


def takeaways(a: StudyAnalysis) -> list[Takeaway]:
    """One takeaway per factor with at least one comparison, in the spec's order."""
    titles = factor_titles(a.spec)
    out = []
    for f in a.spec.factors:
        comps = [c for c in a.comparisons if c.factor == f.name]
        if not comps:
            continue
        top = max(comps, key=lambda c: c.diff.mean)
        if top.diff.mean > 0:  # a level beats the reference on average
            best, versus, diff, verdict = top.level, f.reference, top.diff, top.verdict
        else:  # the reference is best: against its closest challenger
            best, versus = f.reference, top.level
            diff, verdict = _negated(top.diff), _FLIP.get(top.verdict, top.verdict)
        text = _sentence(titles[f.name], best, versus, f.reference, diff, verdict, top, a.margin)
        out.append(Takeaway(f.name, titles[f.name], best, versus, f.reference, diff, verdict,
                            top.seeds_needed, text))  # fmt: skip
    return out


def _sentence(title, best, versus, reference, diff, verdict, c: Comparison, margin) -> str:
    ref = f"{versus} (the reference)" if versus == reference else versus
    head = f"{title}: {best}"
    if best == reference:
        head += " (the reference)"
    if verdict == stats.BETTER:
        return (
            f"{head} is best; it beats {ref} by {_ci(diff)} of test accuracy, a difference "
            f"the study can vouch for (better, after Holm correction over the study)."
        )
    if verdict == stats.EQUIVALENT:
        return (
            f"{head} and {ref} are as good as each other: {_ci(diff)}, inside ±{margin:.2f} "
            f"points (no difference detected)."
        )
    if verdict == stats.UNRESOLVED:
        more = f"; about {c.seeds_needed} seeds would" if (c.seeds_needed or 0) > c.n else ""
        return (
            f"{head} came out ahead of {ref} by {_ci(diff)}, but with {c.n} seeds the study "
            f"cannot vouch for it once corrected for its {c.family} comparisons "
            f"(unresolved{more})."
        )
    return f"{head} came out ahead of {ref} by {_ci(diff)} ({verdict})."


def _gap_comparisons(a: StudyAnalysis, factor: Factor) -> list[Comparison]:
    """The factor's comparisons that have a paired gap difference."""
    return [c for c in a.comparisons if c.factor == factor.name and c.gap_diff is not None]


def gap_cuts(a: StudyAnalysis, factor: Factor) -> list[Comparison]:
    """The factor's comparisons whose paired gap difference's 95% CI lies below zero."""
    # nan bounds compare False: not claimed
    return [c for c in _gap_comparisons(a, factor) if c.gap_diff.high < 0]


LOSS_RISE = 0.10  # a validation loss this much above its lowest counts as risen


def overfitting_lessons(a: StudyAnalysis, factor: Factor) -> list[str]:
    """For a regularization factor measured on clean training images: how far the reference
    overfits, and each level whose paired gap difference excludes zero, with its accuracy."""
    if factor.kind != "regularization":
        return []
    ref = a.cells.get(f"{factor.name}={factor.reference}")
    if ref is None or not ref.n or not ref.clean_gap:
        return []
    comps = _gap_comparisons(a, factor)
    cut = gap_cuts(a, factor)
    ref_train = ref.gap.mean + ref.val_accuracy.mean
    if not comps:  # the reference alone (a pilot): no level to judge
        verdict = ""
    elif cut:
        verdict = " A regularizer that works shrinks it."
    else:
        verdict = (" No level cuts that gap measurably (every paired gap difference's 95% CI "
                   "reaches zero).")  # fmt: skip
    lines = [
        f"Overfitting: without regularization ({factor.reference}) the network ends "
        f"{ref_train:.1f}% accurate on its own training images and "
        f"{ref.val_accuracy.mean:.1f}% on validation images, a train-validation gap of "
        f"{ref.gap.mean:.2f} points"
        + (f" [95% CI {ref.gap.low:.2f}, {ref.gap.high:.2f}]" if not math.isnan(ref.gap.low)
           else "")
        + "."
        + verdict
    ]  # fmt: skip
    decline = _decline_sentence(ref, a.margin)
    if decline:
        lines[0] += " " + decline
    for c in sorted(cut, key=lambda c: c.gap_diff.mean):
        lines.append(_gap_sentence(a, factor, c, ref_train))
    for c in (c for c in comps if c.gap_diff.low > 0):
        g, to = c.gap_diff, a.cells[f"{factor.name}={c.level}"].gap.mean
        lines.append(f"{c.level} widens the gap by {g.mean:.2f} points [95% CI {g.low:.2f}, "
                     f"{g.high:.2f}] (to {to:.2f}): it fits its training images even more "
                     "closely than the reference.")  # fmt: skip
    return lines


def _decline_sentence(ref, margin: float) -> str:
    """Whether the reference's validation curves actually turn after their best epoch:
    overfitting that costs accuracy, only confidence (the loss rises while accuracy holds), or
    hardly any."""
    drop, rise, lowest = ref.val_drop, ref.val_loss_rise, ref.val_loss_lowest
    if drop is None or rise is None or not lowest:
        return ""
    share = rise.mean / lowest
    text = (
        f"After its best epoch its validation loss rose from {lowest:.3f} (at epoch "
        f"{ref.val_loss_best_epoch:g}, median over seeds) by {rise.mean:.3f} ({share:.0%}) to "
        f"the end, and its validation accuracy {_averaged(ref.val_drop_window)}ended "
        f"{drop.mean:.2f} points below its peak"
        + (f" [95% CI {drop.low:.2f}, {drop.high:.2f}]" if not math.isnan(drop.low) else "")
        + "."
    )
    if drop.mean >= margin:
        return text + " Validation accuracy falls: here overfitting costs accuracy."
    if share > LOSS_RISE:
        return text + (
            f" Accuracy barely turns (less than {margin:.2f} points): here overfitting shows "
            "in the loss and the calibration (confident mistakes) more than in accuracy."
        )
    return text + " Neither curve turns much: little overfitting to repair in this budget."


def _averaged(window: int) -> str:
    return f"in {window}-epoch moving averages " if window > 1 else ""


def _gap_sentence(a: StudyAnalysis, factor: Factor, c: Comparison, ref_train: float) -> str:
    cell = a.cells[f"{factor.name}={c.level}"]
    ref = a.cells[f"{factor.name}={factor.reference}"]
    g = c.gap_diff
    train = cell.gap.mean + cell.val_accuracy.mean
    head = (
        f"{c.level} cuts the gap by {-g.mean:.2f} points [95% CI {-g.high:.2f}, {-g.low:.2f}] "
        f"(to {cell.gap.mean:.2f})"
    )
    if c.verdict == stats.BETTER:
        return (
            f"{head}, and its test accuracy rises, {_ci(c.diff)}: less memorizing, more accuracy."
        )
    if c.verdict == stats.WORSE and cell.val_accuracy.mean < ref.val_accuracy.mean:
        # gap = train - validation: with both lower, training accuracy fell the most
        return (
            f"{head} even though its test accuracy drops, {_ci(c.diff)} ({c.verdict}): "
            f"its training accuracy fell from {ref_train:.1f}% to {train:.1f}%, further than its "
            f"validation accuracy ({ref.val_accuracy.mean:.1f}% to {cell.val_accuracy.mean:.1f}"
            "%), so the gap closed because it fits its training images less. A smaller gap "
            "means less overfitting, not a better model: in this budget it underfits."
        )
    if c.verdict == stats.WORSE:
        return (
            f"{head}, while its test accuracy drops, {_ci(c.diff)} ({c.verdict}): less "
            "memorizing, and less accuracy."
        )
    return (
        f"{head}, while its test accuracy changes by {_ci(c.diff)} ({c.verdict}): less "
        "memorizing, without a gain in accuracy the study can vouch for."
    )
