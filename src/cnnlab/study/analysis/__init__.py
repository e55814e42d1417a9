"""From completed trials to numbers: per-config summaries, paired comparisons with verdicts,
importance and learning-curve summaries; the sentences are written in ``verdicts.py``.

Everything here reads trial records (never re-trains) and is deterministic, so a report can be
rebuilt at any time, including from a study that is still running (incomplete cells are
reported with the seeds they have).

The verdicts are Holm-adjusted over every comparison of the study: a reader takes away the
study's conclusions together, and within each factor alone 28 tests would let about one in
twenty false verdicts through per study (issue 23: six of the standard v2 study's verdicts
did not survive the study-wide correction). The within-factor adjustment is shown beside it.
Every comparison gets a verdict (better, worse, no difference detected: an equivalence test
at +-margin, adjusted likewise; unresolved, with the seeds a power calculation says would
resolve it, as a range over the interval of the seed-to-seed spread); ``DEFAULT_MARGIN`` is
the smallest difference worth a claim.

Factor importance is the spread of a factor's level means (best minus worst, in points) with a
seed-bootstrap interval: partial omega squared neared 1 for every factor of the standard v2
study, so it could not rank them. The seed-blocked ANOVA (every level of a factor shares the
seeds) still gives each factor's test and partial omega squared.
Optuna's fANOVA importance fits a random forest over a sampled search space; a designed study
varies one factor at a time around a baseline (or crosses a few factors completely), so the
exact ANOVA decomposition of the design is available, needs no surrogate model and comes with
a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.intervals import geometric_interval
from cnnlab.study.analysis import curves, stats
from cnnlab.study.analysis.budgets import budget_dependence
from cnnlab.study.analysis.curves import POINTS, epochs_to_target, generalization_gap
from cnnlab.study.analysis.proxy import proxy_check
from cnnlab.study.analysis.summaries import (
    CellSummary,
    Comparison,
    Importance,
    Measure,
    StudyAnalysis,
)
from cnnlab.study.analysis.sweeps import summarise_sweeps
from cnnlab.study.analysis.verdicts import comparison_sentence, factor_conclusions
from cnnlab.study.defaults import DEFAULT_MARGIN
from cnnlab.study.spec import Cell, Factor, StudySpec
from cnnlab.study.spec.plan import steps_per_epoch
from cnnlab.study.storage import TrialRecord

__all__ = [
    "DEFAULT_MARGIN", "POINTS", "SECONDARY", "CellSummary", "Comparison", "Importance",
    "StudyAnalysis", "analyse", "epochs_to_target", "generalization_gap",
]  # fmt: skip

ALPHA = stats.ALPHA
LOWER, HIGHER = "lower", "higher"  # the verdicts on a measure beside accuracy
SECONDARY = ("test_loss", "ece")  # the measures beside accuracy, lower better for both


# -- per trial -----------------------------------------------------------------------------


def _summarise(cell: Cell, records: list[TrialRecord], target: float) -> CellSummary:
    def col(f) -> list[float]:
        return [f(r) for r in records]

    reached = [e for e in (epochs_to_target(r.history, target) for r in records) if e is not None]
    lrs = [r.lr for r in records if r.lr is not None]
    per_epoch, epochs = _steps(records[0].config) if records else (None, None)
    steps, _ = curves.median_or_none(
        [curves.steps_to_target(r.history, target, per_epoch) if per_epoch else None
         for r in records]
    )  # fmt: skip
    seconds, _ = curves.median_or_none(
        [curves.seconds_to_target(r.history, target) for r in records]
    )
    seconds_each = col(_train_seconds)  # stalled epochs at the median (curves)
    return CellSummary(
        cell=cell,
        n=len(records),
        accuracy=_pts(stats.t_interval(col(lambda r: r.metrics["test_accuracy"]))),
        macro_f1=stats.t_interval(col(lambda r: r.metrics["macro_f1"])),
        loss=stats.t_interval(col(lambda r: r.metrics["test_loss"])),
        train_seconds=geometric_interval(seconds_each),
        epoch_seconds=geometric_interval(
            [t / max(len(r.history), 1) for t, r in zip(seconds_each, records, strict=True)]
        ),
        val_accuracy=_pts(stats.t_interval(col(lambda r: r.value))),
        gap=_pts(stats.t_interval(col(lambda r: generalization_gap(r.history)))),
        reached=len(reached),
        epochs_to_target=float(np.median(reached)) if reached else None,
        lr=float(np.mean(lrs)) if lrs else None,
        params=int(records[0].metrics["params"]) if records else None,
        target=target,
        clean_gap=bool(records) and all(curves.has_clean_gap(r.history) for r in records),
        steps_per_epoch=per_epoch,
        steps=per_epoch * epochs if per_epoch and epochs else None,
        steps_to_target=steps,
        seconds_to_target=seconds,
        diverged=sum(bool(r.metrics.get("diverged")) for r in records),
        ece=stats.t_interval(col(lambda r: r.metrics.get("ece"))),
        **_decline([curves.validation_decline(r.history) for r in records]),
    )


def _decline(declines: list[dict[str, float] | None]) -> dict[str, Any]:
    found = [d for d in declines if d is not None]
    if not found:
        return {}
    return {
        "val_drop": stats.t_interval([d["accuracy_drop"] for d in found]),
        "val_drop_window": int(max(d["accuracy_window"] for d in found)),
        "val_loss_rise": stats.t_interval([d["loss_rise"] for d in found]),
        "val_loss_best_epoch": float(np.median([d["loss_best_epoch"] for d in found])),
        "val_loss_lowest": float(np.mean([d["loss_lowest"] for d in found])),
    }


def _train_seconds(r: TrialRecord) -> float:
    return curves.training_seconds(r.history, r.metrics["train_seconds"])


def _steps(config: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(optimizer steps per epoch, epochs) of a trial's config; None for what it lacks."""
    if not {"epochs", "batch_size", "val_size"} <= set(config):
        return None, None
    return steps_per_epoch(config), int(config["epochs"])


def _pts(i: stats.Interval) -> stats.Interval:
    return stats.Interval(i.n, i.mean * POINTS, i.std * POINTS, i.low * POINTS, i.high * POINTS)


# -- the study -----------------------------------------------------------------------------


def analyse(
    spec: StudySpec,
    records: Mapping[str, TrialRecord],
    labels: np.ndarray | None,
    margin: float = DEFAULT_MARGIN,
) -> StudyAnalysis:
    if not margin > 0:
        raise CnnlabError(
            f"the equivalence margin must be a positive number of points, got {margin}"
        )
    trials, cells = spec.plan()
    if records and not {t.key for t in trials} & set(records):
        raise CnnlabError(
            "none of this study's completed trials is in its plan: it was written by an older "
            "cnnlab whose trial keys differ; run its spec again under a new --name"
        )
    summaries = {}
    for cell in cells:
        recs = [records[k] for k in cell.keys if k in records]
        summaries[cell.name] = _summarise(cell, recs, _target(spec, cell))
    comparisons = []
    for f in spec.factors:
        family = _compare_factor(spec, f, cells, records, labels)
        _adjust_within(family)
        comparisons += family
    _judge(comparisons, margin)
    # validation accuracies compare only within one regime: a small-data cell is not "worse"
    own = {f.name for f in spec.factors if not f.has_regime}
    complete_cells = [
        s for s in summaries.values()
        if s.n and not _is_baseline(s.cell) and s.cell.levels[0][0] in own
    ]  # fmt: skip
    best = max(complete_cells, key=lambda s: s.val_accuracy.mean, default=None)
    sweeps = summarise_sweeps(spec, records, cells)
    val_means = {n: (s.val_accuracy.mean, s.n) for n, s in summaries.items() if s.n}
    analysis = StudyAnalysis(
        spec=spec,
        cells=summaries,
        comparisons=comparisons,
        importance=_importance(spec, cells, records),
        sweeps=sweeps,
        proxy=proxy_check(spec, (trials, cells), sweeps, val_means),
        budgets=budget_dependence(spec, (trials, cells), records),
        best=best,
        complete=sum(t.key in records for t in trials),
        planned=len(trials),
        margin=margin,
    )
    analysis.conclusions = {f.name: factor_conclusions(analysis, f) for f in spec.factors}
    return analysis


def _adjust_within(family: list[Comparison]) -> None:
    """Holm over one factor's comparisons: shown beside the study-wide verdict; and, per
    measure beside accuracy, the verdict on that measure (lower, higher, unresolved)."""
    tested = sum(not math.isnan(c.t_pvalue) for c in family)
    for c, p in zip(family, stats.holm([c.t_pvalue for c in family]), strict=True):
        c.factor_family = tested
        c.factor_holm_pvalue = p
    for name in SECONDARY:
        measures = [c.measures[name] for c in family if name in c.measures]
        for m, p in zip(measures, stats.holm([m.paired.t_pvalue for m in measures]), strict=True):
            m.holm_pvalue = p
            if math.isnan(p):
                m.verdict = stats.UNTESTABLE
            elif p < ALPHA:
                m.verdict = LOWER if m.paired.diff.mean < 0 else HIGHER
            else:
                m.verdict = stats.UNRESOLVED


def _judge(comparisons: list[Comparison], margin: float) -> None:
    """Holm over every comparison of the study (difference and equivalence tests alike), then
    a verdict for each. Comparisons without a test (one seed, identical differences) are not
    part of the family."""
    tested = sum(not math.isnan(c.t_pvalue) for c in comparisons)
    adjusted = stats.holm([c.t_pvalue for c in comparisons])
    equivalent = stats.holm([stats.tost_pvalue(c.diff, margin) for c in comparisons])
    for c, p, q in zip(comparisons, adjusted, equivalent, strict=True):
        c.family, c.holm_pvalue, c.equivalence_pvalue = tested, p, q
        c.verdict = stats.verdict(c.diff, p, margin, equivalence_pvalue=q)
        if c.verdict == stats.UNRESOLVED:
            # Holm's first step tests at alpha / m: the seeds that would pass it
            c.seeds_needed = stats.seeds_to_resolve(c.diff, margin, ALPHA / tested)
            c.seeds_needed_range = stats.seeds_to_resolve_range(c.diff, margin, ALPHA / tested)
        c.sentence = comparison_sentence(c, margin)


def _is_baseline(cell: Cell) -> bool:
    return cell.levels[0][0] == "baseline"


def _target(spec: StudySpec, cell: Cell) -> float:
    """The validation target of an OFAT cell's factor (its regime may set its own)."""
    if spec.design != "ofat" or _is_baseline(cell):
        return spec.val_target
    return spec.val_target_of(spec.factor(cell.levels[0][0]))


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
        # McNemar per pair of trials: pooling the seeds' discordant images treats correlated
        # predictions as independent evidence (issue 13: p = 1e-32 where the paired t gave 0.056)
        per_seed = []
        if labels is not None:
            for level_rec, ref_rec in pairs:
                per_seed.append(
                    stats.mcnemar(*stats.discordant_counts(
                        ref_rec.test_pred == labels, level_rec.test_pred == labels
                    ))
                )  # fmt: skip
        # times compare only within one machine (a study resumed on another CPU would mix
        # them: hosts keep their names while the CPU under them changes); the median of the
        # per-seed ratios, so that one trial slowed by another job does not move it
        timed = [(_train_seconds(a), _train_seconds(b))
                 for a, b in pairs if a.environment == b.environment]  # fmt: skip
        ratios = [level / ref for level, ref in timed if ref > 0]
        out.append(
            Comparison(
                factor=factor.name,
                level=lv.label,
                reference=factor.reference,
                n=len(pairs),
                diff=cmp.diff,
                t_pvalue=cmp.t_pvalue,
                wilcoxon_pvalue=cmp.wilcoxon_pvalue,
                mcnemar=per_seed,
                time_ratio=float(np.median(ratios)) if ratios else math.nan,
                identical=cmp.identical,
                gap_diff=stats.t_interval(
                    [
                        (generalization_gap(p[0].history) - generalization_gap(p[1].history))
                        * POINTS
                        for p in pairs
                    ]
                ),
                measures=_measures(pairs),
            )  # fmt: skip
        )
    return out


def _measures(pairs: list[tuple[TrialRecord, TrialRecord]]) -> dict[str, Measure]:
    """Test loss and ECE, level minus reference, on the pairs where both trials have it (a
    diverged trial has neither)."""
    out = {}
    for name in SECONDARY:
        both = [(a.metrics.get(name), b.metrics.get(name)) for a, b in pairs]
        both = [(x, y) for x, y in both if x is not None and y is not None]
        if both:
            out[name] = Measure(stats.paired_comparison(*zip(*both, strict=True)))
    return out


def _importance(spec: StudySpec, cells, records) -> list[Importance]:
    """Seed-blocked ANOVA per factor (OFAT) or of the whole design (factorial), on the seeds
    for which every cell involved completed: the ANOVA needs the balanced table."""
    design_cells = [c for c in cells if not _is_baseline(c)]
    if spec.design == "factorial":
        groups = [(design_cells, [f.name for f in spec.factors])]
    else:
        groups = [
            ([c for c in design_cells if c.levels[0][0] == f.name], [f.name]) for f in spec.factors
        ]
    out = []
    for group, factors in groups:
        rows, values, seeds = _balanced_table(group, spec.seeds, records)
        if seeds < 2 or len(group) < 2:
            out += [Importance(f, math.nan, math.nan, 0, 0, math.nan, seeds, math.nan)
                    for f in factors]  # fmt: skip
            continue
        for term, a in stats.blocked_anova(rows, values, factors).items():
            spread, low, high = math.nan, math.nan, math.nan
            if " x " not in term:
                means = _level_means(term, rows, values)
                spread = max(means) - min(means)
                low, high = _spread_interval(term, rows, values)
            out.append(Importance(term, a.omega_squared, a.f_statistic, a.df, a.df_error,
                                  a.pvalue, seeds, spread, low, high))  # fmt: skip
    return sorted(out, key=lambda i: -math.inf if math.isnan(i.spread) else i.spread,
                  reverse=True)  # fmt: skip


def _balanced_table(group: list[Cell], seeds, records) -> tuple[list[dict], list[float], int]:
    """Rows (levels and seed) and test accuracies (points) of the seeds complete in every cell
    of ``group``; the cells' keys are in the spec's seed order."""
    rows, values, used = [], [], 0
    for i, seed in enumerate(seeds):
        if not all(i < len(c.keys) and c.keys[i] in records for c in group):
            continue
        used += 1
        for cell in group:
            rows.append({**dict(cell.levels), "seed": str(seed)})
            values.append(records[cell.keys[i]].metrics["test_accuracy"] * POINTS)
    return rows, values, used


BOOTSTRAP_ROUNDS = 2000


def _spread_interval(factor: str, rows, values) -> tuple[float, float]:
    """95% percentile interval of the spread of level means, resampling seeds (each seed keeps
    all its levels, so the pairing by seed survives). A seed bootstrap from 5 seeds is rough,
    and the spread is biased upward (the best and worst level are chosen from the data), which
    the interval inherits: read it as "how far apart the levels are", not as a test."""
    by_seed: dict[str, dict[str, float]] = {}
    for row, v in zip(rows, values, strict=True):
        by_seed.setdefault(row["seed"], {})[row[factor]] = v
    seeds = sorted(by_seed)
    if len(seeds) < 2:
        return math.nan, math.nan
    levels = sorted(by_seed[seeds[0]])
    table = np.array([[by_seed[s][lv] for lv in levels] for s in seeds])  # seeds x levels
    rng = np.random.default_rng(0)  # a report rebuilt from the same trials says the same
    picks = rng.integers(0, len(seeds), size=(BOOTSTRAP_ROUNDS, len(seeds)))
    means = table[picks].mean(axis=1)  # rounds x levels
    spreads = means.max(axis=1) - means.min(axis=1)
    return float(np.percentile(spreads, 2.5)), float(np.percentile(spreads, 97.5))


def _level_means(factor: str, rows, values) -> list[float]:
    groups: dict[str, list[float]] = {}
    for row, v in zip(rows, values, strict=True):
        groups.setdefault(row[factor], []).append(v)
    return [float(np.mean(g)) for g in groups.values()]
