"""From completed trials to numbers: per-config summaries, paired comparisons, importance,
learning-curve summaries and the conclusion sentences of the report.

Everything here reads trial records (never re-trains) and is deterministic, so a report can be
rebuilt at any time, including from a study that is still running (incomplete cells are
reported with the seeds they have).

Factor importance is a variance decomposition (eta squared): the share of the spread of test
accuracy, over all trials of a factor's levels, that the level explains, with its ANOVA F-test.
Optuna's fANOVA importance fits a random forest over a sampled search space; a designed study
varies one factor at a time around a baseline (or crosses a few factors completely), so the
exact ANOVA decomposition of the design is available, needs no surrogate model and comes with
a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.study import stats
from cnnlab.study.spec import Cell, Factor, StudySpec
from cnnlab.study.storage import TrialRecord

ALPHA = 0.05
POINTS = 100.0  # accuracies are reported in percentage points


@dataclass
class CellSummary:
    cell: Cell
    n: int  # completed seeds
    accuracy: stats.Interval  # test accuracy, in points
    macro_f1: stats.Interval
    loss: stats.Interval
    train_seconds: stats.Interval
    epoch_seconds: stats.Interval
    val_accuracy: stats.Interval
    gap: stats.Interval  # train - val accuracy at the last epoch, in points
    reached: int  # seeds whose validation accuracy reached the study's target
    epochs_to_target: float | None  # median over the seeds that reached it
    lr: float | None  # learning rate used (tuned: the sweep's choice)
    params: int | None


@dataclass
class Comparison:
    factor: str
    level: str
    reference: str
    n: int  # pairs
    diff: stats.Interval  # level - reference, points
    t_pvalue: float
    wilcoxon_pvalue: float
    mcnemar: stats.McNemar
    time_ratio: float  # mean training seconds, level / reference
    holm_pvalue: float = math.nan  # paired t, Holm-adjusted over the whole study
    mcnemar_holm_pvalue: float = math.nan
    sentence: str = ""

    @property
    def significant(self) -> bool:
        excludes_zero = not (self.diff.low <= 0 <= self.diff.high)
        return excludes_zero and self.holm_pvalue < ALPHA


@dataclass
class Importance:
    term: str
    eta_squared: float
    pvalue: float
    spread: float  # best minus worst level mean, points


@dataclass
class StudyAnalysis:
    spec: StudySpec
    cells: dict[str, CellSummary]  # by cell name
    comparisons: list[Comparison]
    importance: list[Importance]
    sweeps: dict[str, dict[str, Any]]  # optimizer -> {chosen, candidates}
    best: CellSummary | None  # highest mean validation accuracy
    conclusions: dict[str, list[str]] = field(default_factory=dict)  # by factor
    complete: int = 0
    planned: int = 0


# -- per trial -----------------------------------------------------------------------------


def epochs_to_target(history: list[Mapping[str, Any]], target: float) -> int | None:
    """First epoch whose validation accuracy reaches ``target``; None when none does."""
    for i, row in enumerate(history, start=1):
        v = row.get("val_accuracy")
        if v is not None and float(v) >= target:
            return int(row.get("epoch", i))
    return None


def generalization_gap(history: list[Mapping[str, Any]]) -> float:
    last = history[-1]
    return float(last["train_accuracy"]) - float(last["val_accuracy"])


def _summarise(cell: Cell, records: list[TrialRecord], target: float) -> CellSummary:
    def col(f) -> list[float]:
        return [f(r) for r in records]

    reached = [e for e in (epochs_to_target(r.history, target) for r in records) if e is not None]
    lrs = [r.lr for r in records if r.lr is not None]
    return CellSummary(
        cell=cell,
        n=len(records),
        accuracy=_pts(stats.t_interval(col(lambda r: r.metrics["test_accuracy"]))),
        macro_f1=stats.t_interval(col(lambda r: r.metrics["macro_f1"])),
        loss=stats.t_interval(col(lambda r: r.metrics["test_loss"])),
        train_seconds=stats.t_interval(col(lambda r: r.metrics["train_seconds"])),
        epoch_seconds=stats.t_interval(
            col(lambda r: r.metrics["train_seconds"] / max(len(r.history), 1))
        ),
        val_accuracy=_pts(stats.t_interval(col(lambda r: r.value))),
        gap=_pts(stats.t_interval(col(lambda r: generalization_gap(r.history)))),
        reached=len(reached),
        epochs_to_target=float(np.median(reached)) if reached else None,
        lr=float(np.mean(lrs)) if lrs else None,
        params=int(records[0].metrics["params"]) if records else None,
    )


def _pts(i: stats.Interval) -> stats.Interval:
    return stats.Interval(i.n, i.mean * POINTS, i.std * POINTS, i.low * POINTS, i.high * POINTS)


# -- the study -----------------------------------------------------------------------------


def analyse(
    spec: StudySpec, records: Mapping[str, TrialRecord], labels: np.ndarray | None
) -> StudyAnalysis:
    trials, cells = spec.plan()
    if records and not {t.key for t in trials} & set(records):
        raise CnnlabError(
            "none of this study's completed trials is in its plan: it was written by an older "
            "cnnlab whose trial keys differ; run its spec again under a new --name"
        )
    summaries = {}
    for cell in cells:
        recs = [records[k] for k in cell.keys if k in records]
        summaries[cell.name] = _summarise(cell, recs, spec.val_target)
    comparisons = [
        c for f in spec.factors for c in _compare_factor(spec, f, cells, records, labels)
    ]
    for attr, out in (("t_pvalue", "holm_pvalue"), ("mcnemar", "mcnemar_holm_pvalue")):
        raw = [c.mcnemar.pvalue if attr == "mcnemar" else getattr(c, attr) for c in comparisons]
        for c, p in zip(comparisons, stats.holm(raw), strict=True):
            setattr(c, out, p)
    for c in comparisons:
        c.sentence = comparison_sentence(c, len(comparisons))
    complete_cells = [s for s in summaries.values() if s.n and not _is_baseline(s.cell)]
    best = max(complete_cells, key=lambda s: s.val_accuracy.mean, default=None)
    analysis = StudyAnalysis(
        spec=spec,
        cells=summaries,
        comparisons=comparisons,
        importance=_importance(spec, cells, records),
        sweeps=_sweeps(spec, records),
        best=best,
        complete=sum(t.key in records for t in trials),
        planned=len(trials),
    )
    analysis.conclusions = {f.name: factor_conclusions(analysis, f) for f in spec.factors}
    return analysis


def _is_baseline(cell: Cell) -> bool:
    return cell.levels[0][0] == "baseline"


def _compare_factor(spec, factor: Factor, cells, records, labels) -> list[Comparison]:
    """Each level against the factor's reference level, paired by seed (and, in a factorial
    design, by the levels of the other factors)."""
    by_levels = {c.levels: c for c in cells if not _is_baseline(c)}
    out = []
    for lv in factor.levels:
        if lv.label == factor.reference:
            continue
        pairs: list[tuple[TrialRecord, TrialRecord]] = []
        for levels, cell in by_levels.items():
            if dict(levels).get(factor.name) != lv.label:
                continue
            ref_levels = tuple((f, factor.reference if f == factor.name else v) for f, v in levels)
            ref = by_levels[ref_levels]
            for k_level, k_ref in zip(cell.keys, ref.keys, strict=True):
                if k_level in records and k_ref in records:
                    pairs.append((records[k_level], records[k_ref]))
        if not pairs:
            continue
        acc = [p[0].metrics["test_accuracy"] * POINTS for p in pairs]
        acc_ref = [p[1].metrics["test_accuracy"] * POINTS for p in pairs]
        cmp = stats.paired_comparison(acc, acc_ref)
        b = c = 0
        if labels is not None:
            for level_rec, ref_rec in pairs:
                db, dc = stats.discordant_counts(
                    ref_rec.test_pred == labels, level_rec.test_pred == labels
                )
                b, c = b + db, c + dc
        seconds = np.mean([p[0].metrics["train_seconds"] for p in pairs])
        seconds_ref = np.mean([p[1].metrics["train_seconds"] for p in pairs])
        out.append(
            Comparison(
                factor=factor.name,
                level=lv.label,
                reference=factor.reference,
                n=len(pairs),
                diff=cmp.diff,
                t_pvalue=cmp.t_pvalue,
                wilcoxon_pvalue=cmp.wilcoxon_pvalue,
                mcnemar=stats.mcnemar(b, c),
                time_ratio=float(seconds / seconds_ref) if seconds_ref > 0 else math.nan,
            )  # fmt: skip
        )
    return out


def _importance(spec: StudySpec, cells, records) -> list[Importance]:
    design_cells = [c for c in cells if not _is_baseline(c)]
    out = []
    if spec.design == "factorial":
        rows, values = [], []
        for cell in design_cells:
            for k in cell.keys:
                if k in records:
                    rows.append(dict(cell.levels))
                    values.append(records[k].metrics["test_accuracy"] * POINTS)
        complete = all(k in records for c in design_cells for k in c.keys)
        if len(values) > 1 and complete:  # the decomposition needs the balanced design
            etas = stats.anova_eta_squared(rows, values, [f.name for f in spec.factors])
            for term, eta in etas.items():
                spread = math.nan
                if " x " not in term:
                    means = _level_means(term, rows, values)
                    spread = max(means) - min(means)
                out.append(Importance(term, eta, math.nan, spread))
    else:
        for f in spec.factors:
            groups: dict[str, list[float]] = {}
            for cell in design_cells:
                if cell.levels[0][0] != f.name:
                    continue
                vals = [
                    records[k].metrics["test_accuracy"] * POINTS for k in cell.keys if k in records
                ]
                if vals:
                    groups[cell.levels[0][1]] = vals
            one = stats.eta_squared(groups)
            means = [float(np.mean(v)) for v in groups.values()]
            spread = max(means) - min(means) if len(means) > 1 else math.nan
            out.append(Importance(f.name, one.eta_squared, one.pvalue, spread))
    return sorted(out, key=lambda i: -1 if math.isnan(i.eta_squared) else -i.eta_squared)


def _level_means(factor: str, rows, values) -> list[float]:
    groups: dict[str, list[float]] = {}
    for row, v in zip(rows, values, strict=True):
        groups.setdefault(row[factor], []).append(v)
    return [float(np.mean(g)) for g in groups.values()]


def _sweeps(spec: StudySpec, records: Mapping[str, TrialRecord]) -> dict[str, dict[str, Any]]:
    """Per tuned optimizer: every swept LR with its validation accuracy, and the choice."""
    out: dict[str, dict[str, Any]] = {}
    for r in records.values():
        if r.kind == "sweep":
            entry = out.setdefault(r.config["optimizer"], {"runs": [], "chosen": None})
            entry["runs"].append({"lr": r.config["lr"], "seed": r.seed, "val_accuracy": r.value})
        elif r.lr_choice is not None:
            entry = out.setdefault(r.config["optimizer"], {"runs": [], "chosen": None})
            entry["chosen"] = r.lr_choice["chosen"]
    for entry in out.values():
        entry["runs"].sort(key=lambda x: (x["lr"], x["seed"]))
    return out


# -- sentences -----------------------------------------------------------------------------


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


def comparison_sentence(c: Comparison, family: int) -> str:
    """One sentence from the numbers of a comparison (no conclusion is written by hand)."""
    d = c.diff
    subject = f"{c.factor} = {c.level}"
    ci = f"95% CI {d.low:+.2f} to {d.high:+.2f}"
    speed = _speed(c.time_ratio, c.reference)
    mc = f"McNemar p {_p(c.mcnemar_holm_pvalue)} Holm-adjusted"
    if c.n < 2 or math.isnan(d.low):
        return (
            f"{subject}: {d.mean:+.2f} points vs {c.reference} from a single seed; "
            f"no interval or test is possible with one seed{speed}."
        )
    if d.low <= 0 <= d.high:
        return (
            f"{subject} vs {c.reference}: no significant difference at this budget "
            f"({d.mean:+.2f} points, {ci}, n = {c.n} seeds){speed}."
        )
    if c.holm_pvalue >= ALPHA:
        return (
            f"{subject} vs {c.reference}: no significant difference at this budget after Holm "
            f"correction over {family} comparisons ({d.mean:+.2f} points, unadjusted {ci}, "
            f"Holm-adjusted p {_p(c.holm_pvalue)}){speed}."
        )
    verb = "raised" if d.mean > 0 else "lowered"
    return (
        f"{subject} {verb} test accuracy by {abs(d.mean):.2f} points vs {c.reference} "
        f"({ci}, Holm-adjusted paired-t p {_p(c.holm_pvalue)}; {mc}){speed}."
    )


def factor_conclusions(analysis: StudyAnalysis, factor: Factor) -> list[str]:
    comps = [c for c in analysis.comparisons if c.factor == factor.name]
    lines = []
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
    sig = [c for c in comps if c.significant]
    lines.append(
        f"{len(sig)} of {len(comps)} levels differ significantly from {factor.reference} "
        "after Holm correction."
        if comps
        else "No comparison is possible yet (trials missing)."
    )
    lines += [c.sentence for c in comps]
    if factor.kind == "batch_size":
        lines += _lr_share_sentences(analysis, factor)
    return lines


def _seed_range(levels: list[CellSummary]) -> str:
    lo, hi = min(s.n for s in levels), max(s.n for s in levels)
    return f"{lo} seed{'s' if hi > 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"


def _lr_share_sentences(analysis: StudyAnalysis, scaled: Factor) -> list[str]:
    """For a batch-size factor with linear LR scaling: how much of the accuracy lost by large
    batches at a fixed LR the scaling recovers, level by level."""
    if not any("lr" in lv.overrides for lv in scaled.levels):
        return []
    fixed = next(
        (f for f in analysis.spec.factors
         if f.kind == "batch_size" and not any("lr" in lv.overrides for lv in f.levels)),
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
            f"{fixed.reference}; with the LR scaled linearly (plus warm-up) the change was "
            f"{kept.diff.mean:+.2f} points vs {scaled.reference}, i.e. scaling recovered "
            f"{recovered:.0f}% of the loss."
        )
    return out
