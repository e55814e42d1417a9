"""The report's sentences, written from the numbers of ``analysis/__init__.py`` (never by hand).

Effect sizes first: every comparison opens with its difference in points and its 95% CI,
then the verdict (better / worse / no difference detected / unresolved / no test possible)
and why. One sentence per factor reconciles the factor-level test (seed-blocked ANOVA) with
the pairwise ones, because the two can disagree and a student reading "no level differs" next
to "the factor explains most of the variance" deserves the reason (issue 13).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cnnlab.study.analysis import stats

if TYPE_CHECKING:
    from cnnlab.study.analysis.summaries import CellSummary, Comparison, Importance, StudyAnalysis
    from cnnlab.study.spec import Factor


def _p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _speed(ratio: float, reference: str) -> str:
    if math.isnan(ratio):
        return ""
    if abs(ratio - 1) < 0.05:
        return f"; it trained about as fast as {reference}"
    word = "slower" if ratio > 1 else "faster"
    factor = ratio if ratio > 1 else 1 / ratio
    return f"; it trained {factor:.1f}x {word} than {reference}"


def _family(c: Comparison) -> str:
    study = f"over the study's {c.family} comparison{'s' if c.family != 1 else ''}"
    if math.isnan(c.factor_holm_pvalue):
        return study
    return f"{study} (within {c.factor} alone: {_p(c.factor_holm_pvalue)})"


def _diff_ci(c: Comparison) -> str:
    d = c.diff
    return f"{d.mean:+.2f} points [{d.low:+.2f}, {d.high:+.2f}]"


def comparison_sentence(c: Comparison, margin: float) -> str:
    """One sentence per comparison: difference, CI, verdict, reason."""
    d = c.diff
    subject = f"{c.factor} = {c.level} vs {c.reference}"
    speed = _speed(c.time_ratio, c.reference)
    if c.verdict == stats.UNTESTABLE:
        if c.identical:
            return (
                f"{subject}: {d.mean:+.2f} points in every one of the {c.n} seeds — "
                f"{stats.UNTESTABLE}: identical differences have no spread, so neither a t-test "
                f"nor a confidence interval can be computed{speed}."
            )
        return (
            f"{subject}: {d.mean:+.2f} points from a single seed — {stats.UNTESTABLE}: "
            f"one seed gives no interval{speed}."
        )
    head = (
        f"{subject}: {d.mean:+.2f} points (95% CI {d.low:+.2f} to {d.high:+.2f}, "
        f"n = {c.n} seeds) — {c.verdict}"
    )
    inside = -margin < d.low and d.high < margin
    if c.verdict in (stats.BETTER, stats.WORSE):
        why = f"paired t, Holm-adjusted p {_p(c.holm_pvalue)} {_family(c)}"
        if inside:
            why += (
                f", though the whole CI lies inside ±{margin:.2f} points: a real but small change"
            )
    elif c.verdict == stats.EQUIVALENT:
        why = (
            f"an equivalence test at ±{margin:.2f} points (the margin δ; two one-sided paired "
            f"t-tests) rejects a difference that large, Holm-adjusted p "
            f"{_p(c.equivalence_pvalue)} over the study's {c.family} comparisons"
        )
    else:
        short = (
            "the CI includes zero"
            if d.low <= 0 <= d.high
            else f"Holm-adjusted p {_p(c.holm_pvalue)} {_family(c)}"
        )
        why = f"{short} and reaches beyond ±{margin:.2f} points; " + _seeds_text(c)
    return f"{head}: {why}{speed}."


def _seeds_text(c: Comparison) -> str:
    if c.seeds_needed is None:
        return "no power calculation is possible"
    basis = (
        f"at the observed spread (sd of the differences {c.diff.std:.2f} points, "
        f"{stats.POWER:.0%} power)"
    )
    low, high = c.seeds_needed_range
    spread = ""
    if low is not None or high is not None:
        hi = f"{high}" if high is not None else f"over {stats.MAX_SEEDS_TO_RESOLVE}"
        spread = (
            f"; from {c.n} seeds that sd is itself uncertain, and its 95% interval gives "
            f"{low if low is not None else '?'} to {hi} seeds"
        )
    if c.seeds_needed <= c.n:
        return (
            f"{c.n} seeds should usually be enough {basis}, so this one is borderline: "
            f"a few more seeds would settle it{spread}"
        )
    return f"about {c.seeds_needed} seeds would resolve it {basis}{spread}"


def reconciliation(analysis: StudyAnalysis, factor: Factor) -> str:
    """Factor-level and pairwise results in one sentence."""
    comps = [c for c in analysis.comparisons if c.factor == factor.name]
    imp = next((i for i in analysis.importance if i.term == factor.name), None)
    if not comps:
        return f"{factor.name}: no comparison is possible yet (trials missing)."
    seeds = _seed_range_n([c.n for c in comps])
    sig = [c for c in comps if c.significant]
    ref = factor.reference
    tested = max(c.family for c in comps)
    family = f"the study's {tested} " + ("comparison" if tested == 1 else "comparisons")
    pairwise = (
        f"{len(sig)} of {len(comps)} level{'s' if len(comps) != 1 else ''} "
        f"differ{'s' if len(sig) == 1 else ''} from {ref} after Holm over {family} with {seeds}"
    )
    largest = max(comps, key=lambda c: abs(c.diff.mean))
    ci = _diff_ci(largest) if not math.isnan(largest.diff.low) else f"{largest.diff.mean:+.2f}"
    tail = f"; the largest difference is {largest.level} at {ci} ({largest.verdict})."
    if imp is None or math.isnan(imp.pvalue):
        return (
            f"{factor.name}: no factor-level test yet (it needs every level on at least two "
            f"common seeds); {pairwise}{tail}"
        )
    overall = _anova_text(imp)
    if imp.pvalue < stats.ALPHA:
        if not sig:
            return (
                f"{factor.name} matters overall ({overall}) but no single level differs from "
                f"{ref} after Holm over {family} with {seeds}{tail}"
            )
        return f"{factor.name} matters overall ({overall}) and {pairwise}{tail}"
    if sig:
        return (
            f"{factor.name}: the factor-level test does not detect an effect ({overall}), yet "
            f"{pairwise} (one contrast can be detected where the overall test, spread over "
            f"all levels, is not){tail}"
        )
    return (
        f"{factor.name}: neither the factor-level test ({overall}) nor any single comparison "
        f"with {ref} after Holm detects a difference with {seeds}{tail}"
    )


def _anova_text(imp: Importance) -> str:
    return (
        f"seed-blocked ANOVA F({imp.df}, {imp.df_error}) = {imp.f_statistic:.2f}, "
        f"p {_p(imp.pvalue)}, partial ω² = {imp.omega_squared:.2f}"
    )


def factor_conclusions(analysis: StudyAnalysis, factor: Factor) -> list[str]:
    comps = [c for c in analysis.comparisons if c.factor == factor.name]
    lines = [reconciliation(analysis, factor)]
    levels = [
        analysis.cells[cell_name]
        for cell_name in (f"{factor.name}={lv.label}" for lv in factor.levels)
        if cell_name in analysis.cells and analysis.cells[cell_name].n
    ]
    if levels:
        best = max(levels, key=lambda s: s.accuracy.mean)
        worst = min(levels, key=lambda s: s.accuracy.mean)
        lines.append(
            f"Highest mean test accuracy: {best.cell.levels[0][1]} ({best.accuracy.mean:.2f}%); "
            f"lowest: {worst.cell.levels[0][1]} ({worst.accuracy.mean:.2f}%), "
            f"over {_seed_range(levels)} per level."
        )
    lines += [c.sentence for c in comps]
    if factor.kind == "batch_size":
        lines += _lr_share_sentences(analysis, factor)
    return lines


def _seed_range(levels: list[CellSummary]) -> str:
    return _seed_range_n([s.n for s in levels])


def _seed_range_n(ns: list[int]) -> str:
    lo, hi = min(ns), max(ns)
    return f"{lo} seed{'s' if hi > 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"


def _lr_share_sentences(analysis: StudyAnalysis, scaled: Factor) -> list[str]:
    """For a batch-size factor with linear LR scaling: how much of the accuracy lost by large
    batches at a fixed LR the scaling recovers, level by level."""

    def changes(f: Factor, key: str) -> bool:
        return any(key in lv.overrides for lv in f.levels)

    # at a fixed number of epochs only: an equal-steps factor answers another question
    if not changes(scaled, "lr") or changes(scaled, "epochs"):
        return []
    fixed = next(
        (f for f in analysis.spec.factors
         if f.kind == "batch_size" and not changes(f, "lr") and not changes(f, "epochs")),
        None,
    )  # fmt: skip
    if fixed is None:
        return []
    by = {(c.factor, c.level): c for c in analysis.comparisons}
    out = []
    for lv in scaled.levels:
        lost = by.get((fixed.name, lv.label))
        kept = by.get((scaled.name, lv.label))
        if lost is None or kept is None or lost.diff.mean >= 0:
            continue
        recovered = (kept.diff.mean - lost.diff.mean) / -lost.diff.mean * 100
        out.append(
            f"At batch size {lv.label}, a fixed LR cost {-lost.diff.mean:.2f} points vs "
            f"{fixed.reference}; with the LR scaled (plus warm-up) the change was "
            f"{kept.diff.mean:+.2f} points vs {scaled.reference}, i.e. scaling recovered "
            f"{recovered:.0f}% of the loss."
        )
    return out
