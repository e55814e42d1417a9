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
    rep.heading("What each change did", 3)
    rep.paragraph(
        "Each level is compared with its factor's reference level, paired by seed: the "
        "difference in test accuracy (points) with its 95% confidence interval comes first, "
        "then a verdict. better / worse: the paired t-test rejects 'no difference' after Holm "
        "correction, where each factor is its own Holm family (its comparisons are corrected "
        "together, not with other factors'). no difference detected: the whole 95% CI lies "
        f"inside ±{a.margin:.2f} points (δ = {a.margin:.2f}, the smallest difference this report "
        "treats as worth a claim). unresolved: neither; the last column gives the seeds a power "
        f"calculation ({stats.POWER:.0%} power, at the observed spread of the differences) says "
        "would settle it. no test possible: one seed, or the same difference in every seed."
    )
    if not a.comparisons:
        return
    rep.table([
        {"factor": c.factor, "level vs reference": f"{c.level} vs {c.reference}",
         "difference, points [95% CI]": signed_ci(c.diff), "verdict": c.verdict,
         "seeds": c.n, "Holm p (family)": holm_text(c),
         "seeds to resolve": c.seeds_needed or ""}
        for c in a.comparisons
    ])  # fmt: skip


def holm_text(c) -> str:
    """Holm-adjusted p with the size of its family (the factor's comparisons)."""
    return f"{fmt_p(c.holm_pvalue)} ({c.family})" if not math.isnan(c.holm_pvalue) else ""


def importance_part(rep: Report, a: StudyAnalysis, folder: Path) -> None:
    ranked = [i for i in a.importance if not math.isnan(i.omega_squared)]
    if not a.importance:
        return
    rep.heading("Which factor matters most", 3)
    if ranked:
        top = ranked[0]
        rep.paragraph(
            "Ranked by partial ω² (omega squared) of a seed-blocked ANOVA: the share of the "
            "variance of one trial's test accuracy that the factor's levels explain, seed-to-seed "
            f"variance included. {top.term} explains the most ({top.omega_squared:.0%}; its "
            f"levels span {top.spread:.2f} points).",
            css_class="conclusion",
        )
    if not ranked:
        rep.paragraph(
            "No factor-level test yet: a seed-blocked ANOVA needs every level of a factor on at "
            "least two common seeds."
        )
    rep.table([
        {"factor": i.term,
         "partial ω²": "" if math.isnan(i.omega_squared) else i.omega_squared,
         "F (df)": f"{i.f_statistic:.2f} ({i.df}, {i.df_error})"
         if not math.isnan(i.f_statistic) else "",
         "ANOVA p": fmt_p(i.pvalue), "seeds (blocks)": i.seeds,
         "spread of level means (points)": "" if math.isnan(i.spread) else i.spread}
        for i in a.importance
    ])  # fmt: skip
    if ranked:
        # Partial ω² nears 1 for any factor whose effect dwarfs the seed noise, so the bars
        # also say how far apart the level means are, in points.
        path = plots.bars_by_level(
            [i.term for i in ranked], [i.omega_squared for i in ranked],
            folder / "importance.png", "partial omega squared",
            "Factor importance (above each bar: spread of level means)",
            notes=["" if math.isnan(i.spread) else f"{i.spread:.1f} pts" for i in ranked],
        )  # fmt: skip
        rep.image(
            path,
            "Share of the variance of test accuracy explained by each factor, with the spread "
            "of its level means in points",
        )


def wilcoxon_text(c) -> str:
    if c.n < stats.MIN_WILCOXON_N:
        return f"n < {stats.MIN_WILCOXON_N}"
    return fmt_p(c.wilcoxon_pvalue)


def families(a: StudyAnalysis) -> str:
    sizes = {c.factor: c.family for c in a.comparisons}
    return ", ".join(f"{f}: {m}" for f, m in sizes.items()) or "none yet"


def methods_part(rep, a: StudyAnalysis, meta: dict) -> None:
    rep.heading("Methods")
    rep.bullets([
        "Intervals: Student-t 95% confidence intervals over seeds (each seed changes the "
        "initialisation, the data order, the validation split and the training subset).",
        "Comparisons: each level against its factor's reference level, paired by seed; the "
        "paired t-test (a one-sample t-test on the per-seed differences) decides the verdict. "
        f"The Wilcoxon signed-rank test is shown only from {stats.MIN_WILCOXON_N} seeds: below "
        "that its exact two-sided p-value cannot reach 0.05 whatever the data.",
        "Multiple comparisons: each factor is its own Holm family, corrected over that factor's "
        "comparisons only (" + families(a) + "). better / worse need a Holm-adjusted p < 0.05 "
        f"(then the 95% CI excludes zero too); no difference detected needs the whole 95% CI "
        f"inside ±{a.margin:.2f} points (δ, the margin argument of the report).",
        f"Seeds to resolve: statsmodels TTestPower (paired t = one-sample t on the differences), "
        f"{stats.POWER:.0%} power, α = 0.05 divided by the family size (Holm's first step), to "
        "detect the larger of the observed difference and δ at the observed standard deviation "
        "of the differences; that standard deviation comes from few seeds, so it is a guide.",
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
        "means the levels differ less than noise alone would make them.",
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
