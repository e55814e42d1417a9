"""What an analysis holds: per-cell summaries, comparisons, importance, the whole study.

In a module of their own so that ``verdicts`` (the sentences) reads these types without
importing the analysis that calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cnnlab.study.analysis import stats
from cnnlab.study.analysis.budgets import BudgetDependence
from cnnlab.study.analysis.proxy import ProxyCheck
from cnnlab.study.analysis.sweeps import SweepSummary
from cnnlab.study.defaults import DEFAULT_MARGIN
from cnnlab.study.spec import StudySpec
from cnnlab.study.spec.plan import Cell


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
    reached: int  # seeds whose validation accuracy reached the target
    epochs_to_target: float | None  # median over the seeds that reached it
    lr: float | None  # learning rate used (tuned: the sweep's choice)
    params: int | None
    target: float = math.nan  # the validation target of the cell's factor (or the study's)
    clean_gap: bool = False  # gap measured on clean training images (else running accuracy)
    steps_per_epoch: int | None = None
    steps: int | None = None  # optimizer steps of one trial
    steps_to_target: float | None = None  # median over the seeds that reached the target
    seconds_to_target: float | None = None  # median training seconds, same seeds
    diverged: int = 0  # seeds whose loss became NaN
    ece: stats.Interval | None = None  # expected calibration error on the test set
    # after the best epoch (curves.validation_decline): validation accuracy's fall from its
    # peak (points), validation loss's rise from its lowest, and the median epoch of that lowest
    val_drop: stats.Interval | None = None
    val_drop_window: int = 1  # epochs each end of that fall averages (curves.decline_window)
    val_loss_rise: stats.Interval | None = None
    val_loss_best_epoch: float | None = None
    val_loss_lowest: float | None = None  # mean over seeds


@dataclass
class Measure:
    """A measure beside accuracy (test loss, ECE; lower is better for both), level minus
    reference paired by seed, Holm-adjusted within the factor for that measure."""

    paired: stats.PairedComparison
    holm_pvalue: float = math.nan
    verdict: str = stats.UNTESTABLE  # lower / higher / unresolved / no test possible


@dataclass
class Comparison:
    factor: str
    level: str
    reference: str
    n: int  # pairs
    diff: stats.Interval  # level - reference, points
    t_pvalue: float
    wilcoxon_pvalue: float  # nan below stats.MIN_WILCOXON_N pairs
    mcnemar: list[stats.McNemar]  # one per pair of trials (seed); never Holm-adjusted
    time_ratio: float  # median over seeds timed in one environment of seconds, level / reference
    identical: bool = False  # the same difference in every pair: no test possible
    # level - reference of the train - validation gap at the last epoch, points, paired by seed
    gap_diff: stats.Interval | None = None
    family: int = 0  # tested comparisons of the whole study: the Holm family of the verdicts
    factor_family: int = 0  # tested comparisons of this factor
    holm_pvalue: float = math.nan  # paired t, Holm-adjusted over the whole study (the verdict)
    factor_holm_pvalue: float = math.nan  # paired t, Holm-adjusted within the factor (shown)
    equivalence_pvalue: float = math.nan  # TOST at the margin, Holm-adjusted over the study
    verdict: str = stats.UNTESTABLE
    seeds_needed: int | None = None  # for an unresolved verdict (power calculation)
    # seeds_needed at the ends of the 95% interval of the differences' sd
    seeds_needed_range: tuple[int | None, int | None] = (None, None)
    sentence: str = ""
    # test loss and ECE, level - reference paired by seed (secondary: not in the verdicts)
    measures: dict[str, Measure] = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        return self.verdict in (stats.BETTER, stats.WORSE)


@dataclass
class Importance:
    term: str
    omega_squared: float  # partial omega squared of the seed-blocked ANOVA
    f_statistic: float
    df: int
    df_error: int
    pvalue: float
    seeds: int  # seeds on which every level of the term completed (the ANOVA's blocks)
    spread: float  # best minus worst level mean, points
    # 95% interval of the spread: seeds resampled with replacement, level means recomputed
    spread_low: float = math.nan
    spread_high: float = math.nan


@dataclass
class StudyAnalysis:
    spec: StudySpec
    cells: dict[str, CellSummary]  # by cell name
    comparisons: list[Comparison]
    importance: list[Importance]
    sweeps: dict[str, dict[str, SweepSummary]]  # factor -> level -> its LR sweep
    best: CellSummary | None  # highest mean validation accuracy in the study's own regime
    proxy: ProxyCheck | None = None  # whether the sweeps' shorter budget picks the full one's rate
    # by the shorter factor: its levels' differences against the same levels at a longer budget
    budgets: dict[str, BudgetDependence] = field(default_factory=dict)
    margin: float = DEFAULT_MARGIN  # points; CI inside +-margin: "no difference detected"
    conclusions: dict[str, list[str]] = field(default_factory=dict)  # by factor
    complete: int = 0
    planned: int = 0
