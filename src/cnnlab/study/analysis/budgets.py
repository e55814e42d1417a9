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
from cnnlab.study.spec import Cell, Factor, PlannedTrial, StudySpec
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
    spec: StudySpec,
    plan: tuple[list[PlannedTrial], list[Cell]],
    records: Mapping[str, TrialRecord],
) -> dict[str, BudgetDependence]:
    """By the shorter factor's name: its shared levels against the longer factor's. Only
    where every shared level (the reference included) trains the same network on the same
    data at both budgets, the epochs alone fewer: a factor whose levels set their own epochs
    (equal optimizer steps per batch size, say) is not a budget comparison."""
    if spec.design != "ofat":
        return {}
    trials, cells = plan
    configs = {t.key: t.config for t in trials}
    by_name = {c.name: c for c in cells}
    out = {}
    for short in spec.factors:
        for long in spec.factors:
            if short is long or short.kind != long.kind or short.reference != long.reference:
                continue
            shared = [lv.label for lv in short.levels if lv.label in {x.label for x in long.levels}]
            epochs = [_epochs_only(short, long, lv, by_name, configs) for lv in shared]
            if not shared or None in epochs or len(set(epochs)) != 1:
                continue
            rows = _rows(short, long, shared, by_name, records)
            if rows:
                ((epochs_s, epochs_l),) = set(epochs)
                out[short.name] = BudgetDependence(short.name, long.name, epochs_s, epochs_l,
                                                   short.reference, tuple(rows))  # fmt: skip
    return out


def _epochs_only(short: Factor, long: Factor, level: str, by_name, configs):
    """(shorter, longer) epochs where the two factors' trials of ``level`` differ in their
    epochs alone (and the rate, which each tunes, and the seed), fewer in ``short``."""
    cells = [by_name.get(f"{f.name}={level}") for f in (short, long)]
    if None in cells:
        return None
    one, two = (configs.get(c.keys[0]) for c in cells)
    if one is None or two is None or not one["epochs"] < two["epochs"]:
        return None
    if any(one[k] != two[k] for k in one if k not in ("epochs", "lr", "seed")):
        return None
    return int(one["epochs"]), int(two["epochs"])


def _rows(short: Factor, long: Factor, shared, by_name, records) -> list[BudgetRow]:
    rows = []
    for label in shared:
        if label == short.reference:
            continue
        d_short = _diffs(short, label, by_name, records)
        d_long = _diffs(long, label, by_name, records)
        seeds = sorted(set(d_short) & set(d_long))
        if not seeds:
            continue
        rows.append(BudgetRow(
            label, stats.t_interval(list(d_long.values())),
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
