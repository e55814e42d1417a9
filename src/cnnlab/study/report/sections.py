"""The study report's body, in the order a student reads it: the takeaways in plain words
(each with its number and 95% CI), a table of contents, which factor matters most, every
comparison, then one section per factor under its name in words; statistics, detail tables,
the spec and the methods follow as appendices (``appendix.py``, ``statistics.py``).

Tables in the body keep to at most seven columns, so the page fits a 1,280 px window
(issue 26: 16-column tables were 1,420 px wide); the rest of each level's numbers are in
Appendix B.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnlab import plots
from cnnlab.report import Report
from cnnlab.study.analysis import StudyAnalysis
from cnnlab.study.analysis.takeaways import gap_cuts, overfitting_lessons, takeaways
from cnnlab.study.report.appendix import details_part, spec_part, test_sentences
from cnnlab.study.report.budgets import budget_part
from cnnlab.study.report.calibration import measures_part
from cnnlab.study.report.costs import costs_part
from cnnlab.study.report.scenarios import (
    batch_part,
    batch_plots,
    factor_cells,
    learning_curves_part,
    optimizer_part,
    proxy_part,
    regime_part,
    sweep_part,
)
from cnnlab.study.report.statistics import (
    ci,
    importance_part,
    methods_part,
    signed_ci,
    statistics_appendix,
    verdicts_part,
)
from cnnlab.study.spec import Factor
from cnnlab.study.spec.words import factor_titles


def build_report(analysis: StudyAnalysis, records, meta: dict, folder: Path) -> Report:
    spec = analysis.spec
    rep = Report(f"cnnlab study {meta['name']}: what changes a CNN on Fashion-MNIST")
    takeaways_part(rep, analysis, meta)
    rep.contents()
    importance_part(rep, analysis, folder)
    verdicts_part(rep, analysis)
    titles = factor_titles(spec)
    for factor in spec.factors:
        factor_section(rep, analysis, records, factor, titles[factor.name], folder, meta)
    if spec.design == "factorial":
        factorial_section(rep, analysis, folder)
    statistics_appendix(rep, analysis)
    details_part(rep, analysis)
    spec_part(rep, analysis, meta)
    methods_part(rep, analysis, meta)
    return rep


def takeaways_part(rep: Report, a: StudyAnalysis, meta: dict) -> None:
    """What the study found, in sentences computed from its numbers, before anything else."""
    spec, b = a.spec, a.spec.baseline
    rep.heading("Takeaways")
    status = "complete" if a.complete == a.planned else "INCOMPLETE (still running or stopped)"
    design = "one factor at a time around a baseline" if spec.design == "ofat" else "factorial"
    images = f"{b.train_limit:,}" if b.train_limit else "all 55,000"
    rep.paragraph(
        f"{a.complete} of {a.planned} planned trials completed ({status}). Design: {design}, "
        f"{len(spec.seeds)} seeds; baseline budget: {images} training images, {b.epochs} "
        f"epochs. Every accuracy is on the {meta.get('n_test', 10000):,} "
        "test images, in percent; a difference is in points, with its 95% confidence interval "
        "in brackets."
    )
    lines = [t.sentence for t in takeaways(a)]
    lesson = _overfitting_takeaway(a)
    if lesson:
        lines.append(lesson)
    ranked = [i for i in a.importance if not math.isnan(i.spread)]
    if ranked:
        top = ranked[0]
        lines.append(
            f"Which factor matters most: {factor_titles(spec).get(top.term, top.term)}, whose "
            f"levels span {top.spread:.2f} points of test accuracy [{top.spread_low:.2f}, "
            f"{top.spread_high:.2f}]."
        )
    if lines:
        rep.bullets(lines)
    else:
        rep.paragraph(
            "No takeaway yet: no level has completed beside its reference on a common seed "
            "(where levels tune their learning rate, the sweeps run first)."
        )
    base = a.cells.get("baseline=baseline")
    if base is not None and base.n:
        rep.paragraph(f"Baseline test accuracy: {ci(base.accuracy)} over {base.n} "
                      f"seed{'s' * (base.n != 1)}.")  # fmt: skip
    if a.best is not None:
        rep.paragraph(
            f"Best configuration by mean validation accuracy (among the factors run in the "
            f"study's own regime: validation accuracies compare within one regime only): "
            f"{a.best.cell.name} — validation {a.best.val_accuracy.mean:.2f}%, test "
            f"{ci(a.best.accuracy)} over {a.best.n} seed{'s' * (a.best.n != 1)} (chosen on "
            "validation, so its test accuracy is an unbiased estimate).",
            css_class="conclusion",
        )
    if spec.description:
        rep.paragraph(spec.description)


def _overfitting_takeaway(a: StudyAnalysis) -> str:
    """The largest measured cut of the overfitting gap, in the regularization factor whose
    reference overfits the most (the regime built to show it)."""
    regs = [(a.cells.get(f"{f.name}={f.reference}"), f) for f in a.spec.factors
            if f.kind == "regularization"]  # fmt: skip
    regs = [(s.gap.mean, f) for s, f in regs if s is not None and s.n and s.clean_gap]
    if not regs:
        return ""
    factor = max(regs, key=lambda r: r[0])[1]
    lessons = overfitting_lessons(a, factor)
    if not gap_cuts(a, factor):  # then lessons[1] would be a level that widens the gap
        return ""
    return f"Overfitting ({factor_titles(a.spec)[factor.name]}): {lessons[1]}"


def factor_section(
    rep, a: StudyAnalysis, records, factor: Factor, title: str, folder: Path, meta: dict
):
    rep.heading(title)
    if a.spec.design == "ofat":
        regime_part(rep, a, factor)
    for t in takeaways(a):
        if t.factor == factor.name:
            rep.paragraph(t.sentence.removeprefix(f"{title}: "), css_class="conclusion")
    lessons = overfitting_lessons(a, factor)
    if lessons:
        rep.paragraph(lessons[0], css_class="conclusion")
        rep.bullets(lessons[1:])
    tests = test_sentences(a, factor)  # in Appendix B: the body keeps the plain findings
    rep.bullets([x for x in a.conclusions.get(factor.name, []) if x not in tests])
    if a.spec.design != "ofat":
        return
    cells = factor_cells(a, factor)
    if not cells:
        rep.paragraph("No completed trials for this factor yet.")
        if factor.lr_sweep is not None and a.sweeps.get(factor.name):
            sweep_part(rep, a, factor, folder)  # a running study's sweeps come first
        return
    stem = factor.name.replace(" ", "_")
    labels = [lv for lv, _ in cells]
    ref = dict(cells).get(factor.reference)
    path = plots.errorbar_by_level(
        labels, [s.accuracy.mean for _, s in cells], [s.accuracy.low for _, s in cells],
        [s.accuracy.high for _, s in cells], folder / f"{stem}_accuracy.png",
        "test accuracy (%)", f"{title}: test accuracy (mean, 95% CI)",
        reference=ref.accuracy.mean if ref is not None else None,
    )  # fmt: skip
    rep.image(path, f"Test accuracy per level; dashed: the reference, {factor.reference}")
    learning_curves_part(rep, a, records, factor, folder)
    path = plots.bars_by_level(
        labels, [s.train_seconds.mean for _, s in cells], folder / f"{stem}_time.png",
        "training seconds", f"{title}: training time per trial (mean, 95% CI)",
        lows=[s.train_seconds.low for _, s in cells],
        highs=[s.train_seconds.high for _, s in cells],
    )  # fmt: skip
    rep.image(path, "Training time (validation and test evaluation excluded)")
    costs_part(rep, a, factor, meta.get("costs", {}))
    measures_part(rep, a, factor)
    if factor.kind == "batch_size":
        batch_part(rep, a, factor, folder, _threads(meta))
        batch_plots(rep, a, folder)
    if factor.kind == "optimizer":
        optimizer_part(rep, a, records, factor, folder)
    budget_part(rep, a, factor)
    if factor.lr_sweep is not None:  # any factor whose levels each tune their learning rate
        sweep_part(rep, a, factor, folder)
    if factor.kind == "lr":
        proxy_part(rep, a)
    comps = {c.level: c for c in a.comparisons if c.factor == factor.name}
    rows = []
    for lv, s in cells:
        c = comps.get(lv)
        rows.append({
            "level": lv + (" (reference)" if lv == factor.reference else ""), "seeds": s.n,
            "test acc % [95% CI]": ci(s.accuracy),
            "diff vs ref [95% CI]": signed_ci(c.diff) if c else "",
            "verdict": c.verdict if c else "",
            "gap clean train-val (pts)" if s.clean_gap else "gap train-val (pts)": ci(s.gap),
            "train s": ci(s.train_seconds, 1),
        })  # fmt: skip
    rep.table(rows)
    rep.paragraph("Tests, macro-F1, test loss, epochs to target and learning rates of each "
                  "level: Appendix B.")  # fmt: skip


def _threads(meta: dict) -> str:
    """The worker threads the trials' machines recorded, in words ("1 thread")."""
    found = sorted({str(env.get("threads")) for env in (meta.get("machines") or {}).values()
                    if env.get("threads") is not None})  # fmt: skip
    if not found:
        return ""
    return f"{' or '.join(found)} thread{'' if found == ['1'] else 's'}"


def factorial_section(rep, a: StudyAnalysis, folder: Path) -> None:
    spec = a.spec
    rep.heading("Factorial cells and interaction")
    rows = []
    for name, s in a.cells.items():
        if s.n:
            rows.append(
                {
                    "cell": name,
                    "seeds": s.n,
                    "test acc % [95% CI]": ci(s.accuracy),
                    "val acc %": s.val_accuracy.mean,
                    "train s": ci(s.train_seconds, 1),
                }
            )
    rep.table(rows)
    f1, f2 = spec.factors[0], spec.factors[1]
    matrix = []
    for lv1 in f1.levels:
        row = []
        for lv2 in f2.levels:
            means = [
                s.accuracy.mean for s in a.cells.values()
                if s.n and dict(s.cell.levels).get(f1.name) == lv1.label
                and dict(s.cell.levels).get(f2.name) == lv2.label
            ]  # fmt: skip
            row.append(float(np.mean(means)) if means else math.nan)
        matrix.append(row)
    path = plots.heatmap(
        matrix, [lv.label for lv in f1.levels], [lv.label for lv in f2.levels],
        folder / "interaction.png", f"Mean test accuracy (%): {f1.name} x {f2.name}",
        xlabel=f2.name, ylabel=f1.name,
    )  # fmt: skip
    rep.image(path, "An interaction shows as rows that do not move in parallel")
