"""Do the learning-rate sweeps choose the rate the full budget would? Measured, not assumed.

A sweep tunes a level's rate on a shorter budget (say 4 epochs instead of 12) and on seeds that
are not study seeds: a *proxy*. When the study also trains its baseline at several rates for
the full budget (a factor whose levels are learning rates), every sweep of that same network
(the same config but for the rate, the epochs and the seed) can be checked against it: which
rate the sweep chose, and which rate had the best mean validation accuracy over the study's
seeds at the full budget. Validation accuracy only: the test set plays no part in either.

The full budget's grid is itself coarse (its rates one step apart), so agreement is judged at
one grid step: a choice within that ratio of the full budget's best is "within one step".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnlab.study.analysis.sweeps import SweepSummary
from cnnlab.study.spec import StudySpec
from cnnlab.study.spec.plan import Cell, PlannedTrial, sweep_trials

# what a proxy may change besides the network and its training: the rate, the seed, the budget
_PROXY_KEYS = ("lr", "seed", "epochs")


@dataclass
class ProxyRow:
    sweeps: list[str]  # the levels whose sweep this is ("kernel_size=3x3"); equal sweeps share
    epochs: int  # the sweep's epochs
    seeds: tuple[int, ...]
    chosen: float  # the rate it chose on validation
    complete: bool  # every planned sweep trial ran

    def ratio(self, best: float) -> float:
        return self.chosen / best


@dataclass
class ProxyCheck:
    factor: str  # the factor of learning rates at the full budget
    epochs: int  # the full budget
    seeds: int  # study seeds the full budget's means are over (the fewest of any rate)
    grid: dict[float, float] = field(default_factory=dict)  # rate -> mean val accuracy (points)
    rows: list[ProxyRow] = field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.grid, key=lambda r: self.grid[r])

    @property
    def step(self) -> float:
        """The full budget's grid step (the largest ratio of neighbouring rates)."""
        rates = sorted(self.grid)
        return max((b / a for a, b in zip(rates, rates[1:], strict=False)), default=math.inf)

    def within_step(self, row: ProxyRow) -> bool:
        return 1 / self.step * (1 - 1e-9) <= row.ratio(self.best) <= self.step * (1 + 1e-9)

    def statement(self) -> str:
        done = [r for r in self.rows if r.complete]
        if not done:
            return "No sweep of the baseline network has completed yet."
        agree = sum(self.within_step(r) for r in done)
        rates = ", ".join(f"{r:g}: {v:.2f}%" for r, v in sorted(self.grid.items()))
        return (
            f"At the full budget ({self.epochs} epochs, mean over {self.seeds} study seeds) the "
            f"best validation accuracy came at lr {self.best:g} ({rates}). {agree} of "
            f"{len(done)} completed sweeps of the same network chose a rate within one grid "
            f"step (x{self.step:.3g}) of it"
            + (
                "; the shorter proxy chose the full budget's rate."
                if agree == len(done)
                else "; where it did not, the levels tuned by that proxy may be trained at a "
                "rate the full budget would not choose."
            )
        )


def proxy_check(
    spec: StudySpec,
    plan: tuple[list[PlannedTrial], list[Cell]],
    sweeps: Mapping[str, Mapping[str, SweepSummary]],
    val_means: Mapping[str, tuple[float, int]],
) -> ProxyCheck | None:
    """The check, if the study has a factor of learning rates (kind ``lr``) with results.
    ``val_means``: cell name -> (mean validation accuracy in points, seeds)."""
    factor = next((f for f in spec.factors if f.kind == "lr" and not f.lr_sweep), None)
    if factor is None:
        return None
    trials, cells = plan
    by_key = {t.key: t for t in trials if t.kind == "main"}
    keys = {c.levels: c.keys for c in cells}
    grid: dict[float, float] = {}
    seeds = []
    full: dict[str, Any] | None = None
    for lv in factor.levels:
        cell = f"{factor.name}={lv.label}"
        mean, n = val_means.get(cell, (math.nan, 0))
        cell_keys = keys.get(((factor.name, lv.label),), ())
        cfg = next((by_key[k].config for k in cell_keys if k in by_key), None)
        if cfg is None or not n:
            continue
        full = full or cfg
        grid[float(cfg["lr"])] = mean
        seeds.append(n)
    if full is None or len(grid) < 2:
        return None
    check = ProxyCheck(factor.name, int(full["epochs"]), min(seeds), grid)
    network = _network(full)
    rows: dict[tuple[str, ...], ProxyRow] = {}  # by the sweep's trial keys
    for f in spec.factors:
        for level, s in sweeps.get(f.name, {}).items():
            planned = sweep_trials(spec, f, level)
            cfg = planned[0].config
            if _network(cfg) != network or s.choice is None:
                continue
            # two levels that train the same config share one sweep: one row, both names
            name, keys = f"{f.name}={level}", tuple(t.key for t in planned)
            if keys in rows:
                rows[keys].sweeps.append(name)
            else:
                rows[keys] = ProxyRow(
                    [name], int(cfg["epochs"]), tuple(sorted({t.seed for t in planned})),
                    float(s.choice["chosen"]), s.complete,
                )  # fmt: skip
    check.rows = list(rows.values())
    return check


def _network(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _PROXY_KEYS}
