"""Does a ranking depend on the budget? Two factors of one kind (the optimizers at 12 epochs
and at 4, say) share levels and a reference but differ in the epochs they train: each shared
level's difference from the reference at either budget, and how much it changes between them,
paired by seed (the same seeds run both). Choi et al. (2019) found optimizer rankings move with
the tuning protocol and the budget; this measures it instead of assuming either way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cnnlab.study.analysis import stats
from cnnlab.study.analysis.curves import POINTS
from cnnlab.study.spec import Cell, Factor, StudySpec
from cnnlab.study.storage import TrialRecord


@dataclass(frozen=True)
class BudgetRow:
    level: str
    longer: stats.Interval  # level - reference at the longer budget, points, over seeds
    shorter: stats.Interval  # the same at the shorter budget
    change: stats.PairedComparison  # shorter minus longer difference, paired by seed


@dataclass(frozen=True)
class BudgetDependence:
    shorter: str  # factor names
    longer: str
    shorter_epochs: int
    longer_epochs: int
    reference: str
    rows: tuple[BudgetRow, ...]


def budget_dependence(
    spec: StudySpec, cells: list[Cell], records: Mapping[str, TrialRecord]
) -> dict[str, BudgetDependence]:
    """By the shorter factor's name: its shared levels against the longer factor's."""
    if spec.design != "ofat":
        return {}
    by_name = {c.name: c for c in cells}
    out = {}
    for short in spec.factors:
        for long in spec.factors:
            epochs_s = spec.factor_baseline(short).epochs
            epochs_l = spec.factor_baseline(long).epochs
            if short.kind != long.kind or short.reference != long.reference:
                continue
            if not epochs_s < epochs_l or not _same_regime_but_epochs(spec, short, long):
                continue
            rows = _rows(short, long, by_name, records)
            if rows:
                out[short.name] = BudgetDependence(short.name, long.name, epochs_s, epochs_l,
                                                   short.reference, tuple(rows))  # fmt: skip
    return out


def _same_regime_but_epochs(spec: StudySpec, a: Factor, b: Factor) -> bool:
    one = spec.factor_baseline(a).to_dict()
    two = spec.factor_baseline(b).to_dict()
    return all(one[k] == two[k] for k in one if k not in ("epochs", "seed", "lr"))


def _rows(short: Factor, long: Factor, by_name, records) -> list[BudgetRow]:
    rows = []
    long_levels = {lv.label for lv in long.levels}
    for lv in short.levels:
        if lv.label == short.reference or lv.label not in long_levels:
            continue
        d_short = _diffs(short, lv.label, by_name, records)
        d_long = _diffs(long, lv.label, by_name, records)
        seeds = sorted(set(d_short) & set(d_long))
        if not seeds:
            continue
        rows.append(BudgetRow(
            lv.label, stats.t_interval(list(d_long.values())),
            stats.t_interval(list(d_short.values())),
            stats.paired_comparison([d_short[s] for s in seeds], [d_long[s] for s in seeds]),
        ))  # fmt: skip
    return rows


def _diffs(factor: Factor, level: str, by_name, records) -> dict[int, float]:
    """Seed -> level minus reference test accuracy (points), where both completed."""
    cell, ref = (
        by_name.get(f"{factor.name}={level}"),
        by_name.get(f"{factor.name}={factor.reference}"),
    )
    if cell is None or ref is None:
        return {}
    out = {}
    for k_level, k_ref in zip(cell.keys, ref.keys, strict=True):
        a, b = records.get(k_level), records.get(k_ref)
        if a is not None and b is not None:
            out[a.seed] = (a.metrics["test_accuracy"] - b.metrics["test_accuracy"]) * POINTS
    return out
