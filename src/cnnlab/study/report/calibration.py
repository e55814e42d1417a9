"""Test loss and calibration beside accuracy, for the regularization factors: a regularizer may
leave accuracy where it is and still make the network's probabilities honest (issue 23: on
small data dropout cut the test loss and the ECE while accuracy moved within noise). Each
level against the reference, paired by seed, with its own verdict on each measure."""

from __future__ import annotations

import math

from cnnlab.metrics import ECE_BINS
from cnnlab.report import Report
from cnnlab.study.analysis import SECONDARY, StudyAnalysis
from cnnlab.study.analysis.summaries import Measure
from cnnlab.study.report.scenarios import factor_cells
from cnnlab.study.report.statistics import ci
from cnnlab.study.spec import Factor


def measures_part(rep: Report, a: StudyAnalysis, factor: Factor) -> None:
    """The table of test loss and ECE per level, for a regularization factor."""
    if factor.kind != "regularization":
        return
    cells = factor_cells(a, factor)
    comps = {c.level: c for c in a.comparisons if c.factor == factor.name}
    if not any(c.measures for c in comps.values()):
        return
    rep.paragraph(
        "Test loss and calibration: the cross-entropy on the test images, and the expected "
        f"calibration error (ECE: the gap between confidence and accuracy, {ECE_BINS} "
        "equal-width bins); lower is better for both. Each level against the reference, paired "
        "by seed: lower / higher where the paired t-test, Holm-adjusted within this factor for "
        "that measure, gives p < 0.05. These measures stand beside the accuracy verdicts; they "
        "are not part of the study-wide family."
    )
    rows = []
    for lv, s in cells:
        c = comps.get(lv)
        loss, ece = (c.measures.get(m) if c else None for m in SECONDARY)
        rows.append({
            "level": lv + (" (reference)" if lv == factor.reference else ""),
            "test loss [95% CI]": ci(s.loss, 3),
            "Δ test loss [95% CI]": _diff(loss),
            "test loss verdict": loss.verdict if loss else "",
            "ECE [95% CI]": ci(s.ece, 3) if s.ece is not None else "",
            "Δ ECE [95% CI]": _diff(ece),
            "ECE verdict": ece.verdict if ece else "",
        })  # fmt: skip
    rep.table(rows)


def _diff(m: Measure | None) -> str:
    if m is None:
        return ""
    d = m.paired.diff
    if math.isnan(d.low):
        return f"{d.mean:+.3f}"
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
