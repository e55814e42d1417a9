"""The budget-dependence table (``analysis/budgets.py``), in the shorter factor's section."""

from __future__ import annotations

import math

from cnnlab.report import Report
from cnnlab.study.analysis import StudyAnalysis
from cnnlab.study.report.statistics import signed_ci
from cnnlab.study.spec import Factor


def budget_part(rep: Report, a: StudyAnalysis, factor: Factor) -> None:
    dep = a.budgets.get(factor.name)
    if dep is None:
        return
    rep.heading(f"Does the ranking depend on the budget? {dep.shorter_epochs} against "
                f"{dep.longer_epochs} epochs", 3)  # fmt: skip
    rep.paragraph(
        f"The same levels trained for {dep.longer_epochs} epochs ({dep.longer}) and for "
        f"{dep.shorter_epochs} ({dep.shorter}), each against {dep.reference} at its own budget, "
        "on the same seeds. The change is the shorter budget's difference minus the longer "
        "one's, paired by seed: where its 95% CI excludes zero, how far a level trails or leads "
        "depends on how long it trains."
    )
    rows = []
    for r in dep.rows:
        c = r.change
        moved = not math.isnan(c.diff.low) and (c.diff.low > 0 or c.diff.high < 0)
        rows.append({
            "level": r.level,
            f"vs {dep.reference}, {dep.longer_epochs} epochs": signed_ci(r.longer),
            f"vs {dep.reference}, {dep.shorter_epochs} epochs": signed_ci(r.shorter),
            "change [95% CI]": signed_ci(c.diff),
            "depends on the budget": (
                "no test possible" if math.isnan(c.diff.low) else ("yes" if moved else "no")
            ),
        })  # fmt: skip
    rep.table(rows)
    ranks = [_ranking(dep, longer) for longer in (True, False)]
    rep.paragraph(
        f"Ranking by mean difference, {dep.longer_epochs} epochs: {ranks[0]}; "
        f"{dep.shorter_epochs} epochs: {ranks[1]}."
    )


def _ranking(dep, longer: bool) -> str:
    means = [(r.longer.mean if longer else r.shorter.mean, r.level) for r in dep.rows]
    means.append((0.0, dep.reference))
    return " > ".join(level for _, level in sorted(means, key=lambda m: -m[0]))
