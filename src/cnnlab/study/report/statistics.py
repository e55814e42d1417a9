"""The statistics parts of the study report: how to read the verdicts, every comparison with
its verdict, factor importance (seed-blocked ANOVA, partial omega squared) and the methods.

Kept apart from ``report/__init__.py`` (figures, tables per factor, reproduction) so that what the
report claims about statistics sits in one file next to ``verdicts.py``, which writes the
sentences.
"""

from __future__ import annotations

import math
from pathlib import Path

from cnnlab import plots
from cnnlab.report import Report
from cnnlab.study.analysis import StudyAnalysis, stats
from cnnlab.study.spec.words import factor_titles


def ci(i, digits: int = 2) -> str:
    if i.n == 0 or math.isnan(i.mean):
        return ""
    if math.isnan(i.low):
        return f"{i.mean:.{digits}f}"
    return f"{i.mean:.{digits}f} [{i.low:.{digits}f}, {i.high:.{digits}f}]"


def signed_ci(i) -> str:
    """A difference: signed, so that a loss never reads as a gain."""
    if i.n == 0 or math.isnan(i.mean):
        return ""
    if math.isnan(i.low):
        return f"{i.mean:+.2f}"
    return f"{i.mean:+.2f} [{i.low:+.2f}, {i.high:+.2f}]"


def fmt_p(p: float) -> str:
    return "" if p is None or math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def verdicts_part(rep: Report, a: StudyAnalysis) -> None:
    """Every comparison in four columns: what changed, by how much, the verdict."""
    rep.heading("Every comparison")
    rep.paragraph(
        "Each level against its factor's reference level, on the same seeds: the difference "
        "in test accuracy (points) with its 95% confidence interval, then the verdict. "
        "better / worse: the study can vouch for the difference; no difference detected: "
        f"the two are within ±{a.margin:.2f} points of each other; unresolved: more seeds are "
        "needed to tell; no test possible: one seed, or the same difference in every seed. "
        "How the verdicts are decided (Holm correction, equivalence tests, the seeds a power "
        "calculation asks for) is in Appendix A."
    )
    if not a.comparisons:
        return
    titles = factor_titles(a.spec)
    rep.table([
        {"factor": titles.get(c.factor, c.factor), "level vs reference": f"{c.level} vs "
         f"{c.reference}", "difference, points [95% CI]": signed_ci(c.diff),
         "verdict": c.verdict}
        for c in a.comparisons
    ])  # fmt: skip


def statistics_appendix(rep: Report, a: StudyAnalysis) -> None:
    """How the verdicts are decided, every comparison's adjusted p-values and seeds needed,
    and each factor's seed-blocked ANOVA."""
    rep.heading("Appendix A: statistics behind the verdicts")
    rep.paragraph(
        "Each level is compared with its factor's reference level, paired by seed. better / "
        "worse: the paired t-test rejects 'no difference' after Holm correction over every "
        "comparison of the study (the p corrected within the factor alone is shown beside it). "
        "no difference detected: an equivalence test (two one-sided paired t-tests, TOST) "
        f"rejects a difference of ±{a.margin:.2f} points or more (δ = {a.margin:.2f}, the "
        "smallest difference this report treats as worth a claim), Holm-corrected over the "
        "study likewise. unresolved: neither; the last column gives the seeds a power "
        f"calculation ({stats.POWER:.0%} power, at the observed spread of the differences) "
        "says would settle it, with the range that the uncertainty of that spread allows."
    )
    titles = factor_titles(a.spec)
    if a.comparisons:
        rep.table([
            {"factor": titles.get(c.factor, c.factor), "level": c.level, "seeds": c.n,
             "Holm p, study (family)": holm_text(c),
             "Holm p, factor (family)": factor_holm_text(c),
             "TOST p, Holm": fmt_p(c.equivalence_pvalue), "seeds to resolve [range]": _seeds(c)}
            for c in a.comparisons
        ])  # fmt: skip
    if a.importance:
        rep.paragraph(
            "Seed-blocked ANOVA per factor: the factor's test, and partial ω², the share of "
            "variance it explains next to the seed noise (near 1 whenever an effect dwarfs that "
            "noise, so it cannot rank factors: the ranking uses the spread of level means)."
        )
        rep.table([
            {"factor": titles.get(i.term, i.term),
             "partial ω²": "" if math.isnan(i.omega_squared) else i.omega_squared,
             "F (df)": f"{i.f_statistic:.2f} ({i.df}, {i.df_error})"
             if not math.isnan(i.f_statistic) else "",
             "ANOVA p": fmt_p(i.pvalue), "seeds (blocks)": i.seeds}
            for i in a.importance
        ])  # fmt: skip


def _seeds(c) -> str:
    if not c.seeds_needed:
        return ""
    low, high = c.seeds_needed_range
    if low is None and high is None:
        return str(c.seeds_needed)
    return f"{c.seeds_needed} [{low or '?'}, {high or f'>{stats.MAX_SEEDS_TO_RESOLVE}'}]"


def holm_text(c) -> str:
    """Holm-adjusted p with the size of its family (the study's comparisons)."""
    return f"{fmt_p(c.holm_pvalue)} ({c.family})" if not math.isnan(c.holm_pvalue) else ""


def factor_holm_text(c) -> str:
    """Holm-adjusted p within the comparison's factor alone, with that family's size."""
    p = c.factor_holm_pvalue
    return f"{fmt_p(p)} ({c.factor_family})" if not math.isnan(p) else ""


DASHBOARD = (
    "optuna-dashboard ranks parameters differently because it measures something else: its "
    "importance is fANOVA, a random forest fitted to the validation accuracy of every trial "
    "pooled (learning-rate sweeps and every regime included) over all sampled parameters, "
    "so budget fields that separate those groups (epochs, training images) and any parameter "
    "that varies across them rank high, while this ranking holds everything but one factor "
    "at its baseline and measures how far apart that factor's levels are on the test set, "
    "paired by seed."
)


def importance_part(rep: Report, a: StudyAnalysis, folder: Path) -> None:
    ranked = [i for i in a.importance if not math.isnan(i.spread)]
    if not a.importance:
        return
    titles = factor_titles(a.spec)
    rep.heading("Which factor matters most")
    if not ranked:
        rep.paragraph(
            "No factor-level figure yet: it needs every level of a factor on at least two "
            "common seeds."
        )
        return
    top, last = ranked[0], ranked[-1]
    text = (
        "Each factor's levels are compared by how far apart their mean test accuracies are "
        "(best minus worst level, in points), with a 95% interval from resampling seeds. "
        f"{titles.get(top.term, top.term)} moves accuracy the most: its levels span "
        f"{top.spread:.2f} points [{top.spread_low:.2f}, {top.spread_high:.2f}]"
    )
    if len(ranked) > 1:
        text += (
            f"; {titles.get(last.term, last.term)} the least, {last.spread:.2f} points "
            f"[{last.spread_low:.2f}, {last.spread_high:.2f}]"
        )
    overlap = len(ranked) > 1 and ranked[1].spread_high >= top.spread_low
    if overlap:
        second = titles.get(ranked[1].term, ranked[1].term)
        text += (f". The first's interval overlaps that of the second, {second}, so which of "
                 "the two matters most is not settled")  # fmt: skip
    rep.paragraph(text + ".", css_class="conclusion")
    path = plots.intervals_by_label(
        [titles.get(i.term, i.term) for i in ranked], [i.spread for i in ranked],
        [i.spread_low for i in ranked], [i.spread_high for i in ranked],
        folder / "importance.png", "spread of level means (points of test accuracy)",
        "How far apart each factor's levels are (95% seed-bootstrap interval)",
    )  # fmt: skip
    rep.image(
        path,
        "Best minus worst level mean of test accuracy per factor, with its 95% interval",
    )
    rep.table([
        {"factor": titles.get(i.term, i.term),
         "spread of level means, points [95% CI]": "" if math.isnan(i.spread)
         else f"{i.spread:.2f} [{i.spread_low:.2f}, {i.spread_high:.2f}]",
         "seeds": i.seeds}
        for i in a.importance
    ])  # fmt: skip
    rep.paragraph(DASHBOARD)


def wilcoxon_text(c) -> str:
    if c.n < stats.MIN_WILCOXON_N:
        return f"n < {stats.MIN_WILCOXON_N}"
    return fmt_p(c.wilcoxon_pvalue)


def families(a: StudyAnalysis) -> str:
    sizes = {c.factor: c.factor_family for c in a.comparisons}
    total = max((c.family for c in a.comparisons), default=0)
    within = ", ".join(f"{f}: {m}" for f, m in sizes.items())
    return f"the study: {total} (within each factor: {within})" if within else "none yet"


def methods_part(rep, a: StudyAnalysis, meta: dict) -> None:
    rep.heading("Appendix D: methods")
    rep.bullets([
        "Intervals: Student-t 95% confidence intervals over seeds (each seed changes the "
        "initialisation, the data order, the validation split and the training subset); "
        "seconds are geometric means, their interval computed on the logarithms, so it stays "
        "positive and a trial slowed by another job stretches only its upper end.",
        "Comparisons: each level against its factor's reference level, paired by seed; the "
        "paired t-test (a one-sample t-test on the per-seed differences) decides the verdict. "
        f"The Wilcoxon signed-rank test is shown only from {stats.MIN_WILCOXON_N} seeds: below "
        "that its exact two-sided p-value cannot reach 0.05 whatever the data.",
        "Multiple comparisons: Holm over every comparison of the study, which decides the "
        "verdicts; the correction within each factor alone is shown beside it (family sizes: "
        + families(a) + "). better / worse need a study-wide Holm-adjusted p < 0.05 (then the "
        "95% CI excludes zero too); no difference detected needs the equivalence test (TOST: "
        f"two one-sided paired t-tests against ±{a.margin:.2f} points, δ, the margin argument "
        "of the report) to reject at a study-wide Holm-adjusted p < 0.05.",
        "Seeds to resolve: the power of the paired t-test (a one-sample t on the differences; "
        "the two tails of the noncentral t), "
        f"{stats.POWER:.0%} power, α = 0.05 divided by the study's family size (Holm's first "
        "step), to detect the larger of the observed difference and δ at the observed standard "
        "deviation of the differences; that standard deviation comes from few seeds, so the "
        "range beside it repeats the calculation at both ends of its 95% chi-squared interval.",
        "Identical differences (the same in every seed) have no spread: no t-test and no "
        "interval is computed for them (no test possible), rather than p = 0 and a zero-width "
        "interval.",
        "McNemar: per-image correctness on the test set, one test per seed (exact binomial "
        "below 25 discordant images, else chi-squared with continuity correction). It asks "
        "whether two trained networks differ on these test images, not whether another seed "
        "would; it is shown per seed and never enters the Holm families or the verdicts.",
        "Importance: seed-blocked ANOVA (two-way without interaction, seed as block: the "
        "repeated-measures ANOVA) over each factor's levels on the seeds complete for every "
        "level (factorial: main effects and two-way interactions of the full design, seed as "
        "block), with partial ω² = df (MS - MS_error) / (SS + SS_error + SS_seed + MS_seed) "
        "(Olejnik & Algina 2003), which, unlike η², is not inflated by noise; a negative value "
        "means the levels differ less than noise alone would make them. The ranking uses the "
        "spread of level means instead (best minus worst, points), with a 95% percentile "
        "interval from 2,000 resamples of the seeds (each keeping all its levels); the best "
        "and worst levels are picked from the same data, so the spread leans high.",
        f"Learning curves: epochs (and, for batch sizes, optimizer steps and training seconds) "
        f"until validation accuracy first reaches the target ({a.spec.val_target:.0%}, or the "
        "factor's own), read at epoch ends; generalization gap = accuracy on clean training "
        "images minus validation accuracy at the last epoch. Clean: a fixed subset of the "
        "trial's own training images (as many as its validation split holds, at most 5,000), "
        "evaluated in inference mode at each epoch end (no dropout, no augmentation, batch norm "
        "on its moving statistics), unlike the running accuracy Keras logs while training.",
        "Training time: a level's 'trained N x faster/slower' is the median over seeds of its "
        "training seconds over its reference's, on the seeds where one environment (machine "
        "and versions) timed both: paired, and not moved by one trial slowed by another job.",
    ])  # fmt: skip
