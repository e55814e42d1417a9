"""What each tuned level's learning-rate sweep tried, what it chose, and whether it bracketed it.

Read from the completed sweep trials of a study (never re-trained): the grid, the bracketing
rounds (``tuning.probe_lr``), the rate the tuned trials used, and one sentence saying whether
that rate is interior to the rates tried or at an edge, where the optimum may lie beyond.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cnnlab.study.analysis.curves import POINTS
from cnnlab.study.spec import Cell, Factor, StudySpec
from cnnlab.study.spec.plan import sweep_trials
from cnnlab.study.storage import TrialRecord
from cnnlab.study.tuning import (
    INTERIOR,
    SINGLE,
    UPPER_EDGE,
    LrChoice,
    bracket_position,
    choose_lr,
)


@dataclass
class SweepRun:
    lr: float
    seed: int
    val_accuracy: float
    round: int  # 0: the grid; k: the k-th bracketing round
    diverged: bool = False


@dataclass
class SweepSummary:
    level: str  # the tuned level, e.g. "sgd" or "5x5"
    center: float  # the rate the sweep's multipliers multiply (the level's untuned rate)
    planned: int  # sweep trials in the plan
    extend: int  # bracketing rounds planned (the cap)
    given: bool = False  # center set by lr_sweep.centers (a finer sweep around a known rate)
    runs: list[SweepRun] = field(default_factory=list)
    choice: LrChoice | None = None  # what the tuned trials used (or would use)
    position: str = SINGLE  # tuning.INTERIOR, LOWER_EDGE, UPPER_EDGE or SINGLE

    @property
    def complete(self) -> bool:
        return len(self.runs) == self.planned

    def statement(self) -> str:
        """Whether the chosen rate is bracketed, in one sentence."""
        opt = self.level
        if self.choice is None:
            return f"{opt}: no sweep trial has completed yet."
        chosen = self.choice["chosen"]
        cands = self.choice["candidates"]
        whose = "the centre lr_sweep.centers gives it," if self.given else "its untuned rate"
        times = f"x{chosen / self.center:.3g} {whose} {self.center:g}"
        head = f"{opt}: chose lr {chosen:.3g} ({times}) on validation"
        if not self.complete:
            head += f" from {len(self.runs)} of {self.planned} sweep trials (incomplete)"
        if self.position == SINGLE:
            return f"{head}; only one rate was tried, so nothing was tuned."
        if self.position == INTERIOR:
            i = [c["lr"] for c in cands].index(chosen)
            lo, hi, best = cands[i - 1], cands[i + 1], cands[i]
            return (
                f"{head}; bracketed: the neighbouring rates {lo['lr']:.3g} and {hi['lr']:.3g} "
                f"both did worse ({lo['val_accuracy'] * POINTS:.2f}% and "
                f"{hi['val_accuracy'] * POINTS:.2f}% vs {best['val_accuracy'] * POINTS:.2f}% "
                "validation accuracy)."
            )
        edge = "upper" if self.position == UPPER_EDGE else "lower"
        beyond = "higher" if self.position == UPPER_EDGE else "lower"
        rounds = max((r.round for r in self.runs), default=0)
        cap = (
            "no bracketing round was planned (lr_sweep.extend: 0)"
            if self.extend == 0
            else f"after {rounds} of {self.extend} bracketing rounds"
            + (" (the cap, lr_sweep.extend)" if rounds >= self.extend else "")
        )
        return (
            f"{head}; AT THE {edge.upper()} EDGE of the rates tried ({cands[0]['lr']:.3g} to "
            f"{cands[-1]['lr']:.3g}) {cap}: the best rate may be {beyond}, so {opt} may do "
            "better than reported here."
        )


def summarise_sweeps(
    spec: StudySpec, records: Mapping[str, TrialRecord], cells: list[Cell]
) -> dict[str, dict[str, SweepSummary]]:
    """factor name -> level -> its sweep, for every factor with an LR sweep."""
    out: dict[str, dict[str, SweepSummary]] = {}
    for f in spec.factors:
        if f.lr_sweep is None:
            continue
        for lv in f.levels:
            if lv.tune_lr:
                # the choice its tuned trials recorded (they all saw the same sweep)
                used = [records[k].lr_choice for c in cells if c.levels == ((f.name, lv.label),)
                        for k in c.keys if k in records and records[k].lr_choice]  # fmt: skip
                out.setdefault(f.name, {})[lv.label] = _summary(spec, f, lv.label, records, used)
    return out


def _summary(spec: StudySpec, f: Factor, level: str, records, used) -> SweepSummary:
    assert f.lr_sweep is not None
    planned = sweep_trials(spec, f, level)
    grid = len(f.lr_sweep.multipliers) * len(f.lr_sweep.seeds)
    center = f.level(level).sweep_center
    given = level in dict(f.lr_sweep.centers)
    s = SweepSummary(level, float(center or 0.0), len(planned), f.lr_sweep.extend, given)
    for i, t in enumerate(planned):
        r = records.get(t.key)
        if r is None:
            continue
        round_ = 0 if i < grid else (i - grid) // len(f.lr_sweep.seeds) + 1
        lr = r.lr if r.lr is not None else r.config["lr"]
        s.runs.append(SweepRun(float(lr), r.seed, float(r.value), round_,
                               bool(r.metrics.get("diverged"))))  # fmt: skip
    s.runs.sort(key=lambda x: (x.lr, x.seed))
    if used:
        s.choice = used[0]
    elif s.runs:
        s.choice = choose_lr((x.lr, x.val_accuracy) for x in s.runs)
    if s.choice is not None:
        s.position = bracket_position(s.choice)
    return s
