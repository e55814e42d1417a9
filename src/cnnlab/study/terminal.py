"""What ``study run`` and ``demo`` print around their trials: the plan with its time estimate
first, and at the end each factor's verdict as a table (issue 26: ``make demo`` ended with a
path, not with what it found).

The estimate uses this machine's cached throughput only: measuring it costs about 30 s,
which ``cnnlab study plan`` spends once; a run should start training, not measure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from cnnlab.study.spec.plan import training_images
from cnnlab.study.spec.words import factor_titles

if TYPE_CHECKING:
    from cnnlab.study.analysis import StudyAnalysis
    from cnnlab.study.estimate import Throughput
    from cnnlab.study.spec import PlannedTrial, StudySpec


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def plan_table(spec: StudySpec) -> Table:
    """Each factor in words with its levels, distinct trials (its LR sweeps included) and
    training images (images x epochs, summed over those trials)."""
    trials, cells = spec.plan()
    by_key = {t.key: t for t in trials}
    titles = factor_titles(spec)
    table = Table(title=f"plan: study {spec.name}, {len(spec.seeds)} seeds", title_justify="left")
    for column, justify in (("factor", "left"), ("levels", "left"), ("trials", "right"),
                            ("training images", "right")):  # fmt: skip
        table.add_column(column, justify=justify, overflow="fold")
    for f in spec.factors:
        keys = {k for c in cells if dict(c.levels).get(f.name) is not None for k in c.keys}
        keys |= {t.key for t in trials if t.lr_sweep.split("=")[0] == f.name}
        images = sum(training_images(by_key[k].config) for k in keys if k in by_key)
        levels = ", ".join(lv.label + (" (ref)" if lv.label == f.reference else "")
                           for lv in f.levels)  # fmt: skip
        table.add_row(titles[f.name], levels, str(len(keys)), f"{images:,}")
    return table


def total_line(trials: list[PlannedTrial]) -> str:
    """A contract: tests and scripts parse this line."""
    from cnnlab.study import estimate

    return f"total: {len(trials)} trials, {estimate.total_images(trials)} training images"


def estimate_line(trials: list[PlannedTrial], workers: int, rate: Throughput | None) -> str:
    from cnnlab.study import estimate

    if rate is None:
        return (
            "estimated wall time: not measured on this machine yet (`cnnlab study plan` "
            "measures it once, in about 30 s); the progress bar shows an ETA after the first "
            "trials"
        )
    seconds = estimate.wall_seconds(trials, rate, workers)
    source = f"cached in {estimate.cache_file()}" if rate.cached else "measured just now"
    busy = (
        f"; measured while the machine was busy (load {rate.load:.1f} per core), so slower "
        "than a quiet machine: `cnnlab study plan --remeasure` measures again"
        if rate.busy
        else ""
    )
    return (
        f"estimated wall time: {duration(seconds)} with {workers} workers, from "
        f"{rate.train_rate(128):,.0f} training images/s per worker at batch size 128 "
        f"({rate.key}; {source}); larger kernels and batch norm train slower{busy}"
    )


def print_plan(spec: StudySpec, workers: int, threads: int) -> None:
    """The plan and its estimate, before any trial (cached throughput only)."""
    from cnnlab.study import estimate

    trials = spec.plan()[0]
    Console().print(plan_table(spec))
    print(total_line(trials))
    rate = estimate.throughput(threads, workers, measure=False)
    print(estimate_line(trials, workers, rate), flush=True)


def verdict_table(a: StudyAnalysis) -> Table:
    """Per factor: its best level, the difference to the level it was compared with (95%
    CI, test accuracy points) and the verdict; the same rows as the report's takeaways."""
    from cnnlab.study.analysis.takeaways import takeaways

    table = Table(title=f"verdicts: study {a.spec.name} ({a.complete}/{a.planned} trials)",
                  title_justify="left")  # fmt: skip
    table.add_column("factor", overflow="fold")
    for column in ("best level", "vs", "difference, points [95% CI]", "verdict"):
        table.add_column(column, no_wrap=True)
    for t in takeaways(a):
        d = t.diff
        diff = f"{d.mean:+.2f}"
        if not math.isnan(d.low):
            diff += f" [{d.low:+.2f}, {d.high:+.2f}]"
        versus = t.versus + (" (ref)" if t.versus == t.reference else "")
        table.add_row(t.title, t.best, versus, diff, t.verdict)
    return table


def print_verdicts(storage: str, name: str) -> None:
    """Analyse study ``name`` and print its verdict table (nothing when no trial completed)."""
    from cnnlab.study import storage as st
    from cnnlab.study.analysis import analyse

    study = st.load_study(st.open_storage(storage), name)
    records = st.completed_records(study)
    if not records:
        return
    a = analyse(st.stored_spec(study), records, st.stored_test_labels(study))
    Console().print(verdict_table(a))
