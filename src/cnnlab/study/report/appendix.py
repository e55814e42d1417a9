"""The study report's appendices: every level's detail measures and tests, the spec as it ran
(baseline config, YAML, how to reproduce) and the machines.

Kept out of the report's body (issue 26: a full-page YAML spec and a 30-row config table came
before the first factor, and 16-column tables overflowed the page), so the body reads as
findings and these pages answer "how exactly?".
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from cnnlab.machine import environment_info
from cnnlab.report import Report
from cnnlab.study.analysis import StudyAnalysis
from cnnlab.study.report.scenarios import factor_cells
from cnnlab.study.report.statistics import ci, fmt_p, holm_text, wilcoxon_text
from cnnlab.study.spec.words import factor_titles


def test_sentences(a: StudyAnalysis, factor) -> list[str]:
    """The factor's seed-blocked ANOVA and each comparison's test, in sentences (verdicts.py):
    the first conclusion reconciles the two."""
    lines = a.conclusions.get(factor.name, [])
    tests = {c.sentence for c in a.comparisons if c.factor == factor.name}
    return lines[:1] + [x for x in lines[1:] if x in tests]


def csv_value(v: Any) -> Any:
    """A config value as one cell (lists joined by commas), in results.csv and the tables."""
    return ",".join(map(str, v)) if isinstance(v, list) else v


def details_part(rep: Report, a: StudyAnalysis) -> None:
    """Per factor, two tables of at most eight columns: the tests of each comparison, then
    the measures beside accuracy."""
    if a.spec.design != "ofat":
        return
    rep.heading("Appendix B: each level in detail")
    rep.paragraph(
        "Per factor: the tests behind each verdict (paired t-test Holm-adjusted over the "
        "study, Wilcoxon signed-rank, McNemar per seed: see Methods), then the measures beside "
        "test accuracy."
    )
    titles = factor_titles(a.spec)
    for factor in a.spec.factors:
        cells = factor_cells(a, factor)
        if not cells:
            continue
        rep.heading(titles[factor.name], 3)
        rep.bullets(test_sentences(a, factor))
        comps = {c.level: c for c in a.comparisons if c.factor == factor.name}
        tests, measures = [], []
        for lv, s in cells:
            c = comps.get(lv)
            name = lv + (" (reference)" if lv == factor.reference else "")
            if c is not None:
                tests.append({
                    "level": name, "seeds": c.n,
                    "paired t p, Holm (family)": holm_text(c),
                    "Wilcoxon p": wilcoxon_text(c),
                    "McNemar p per seed": ", ".join(fmt_p(m.pvalue) for m in c.mcnemar),
                })  # fmt: skip
            measures.append({
                "level": name, "macro-F1": ci(s.macro_f1, 4), "test loss": ci(s.loss, 3),
                "s/epoch": ci(s.epoch_seconds, 2),
                f"epochs to val {s.target:.0%}": (
                    f"{s.epochs_to_target:g} ({s.reached}/{s.n})" if s.reached
                    else f"not reached (0/{s.n})"
                ),
                "lr": f"{s.lr:.3g}" if s.lr else "", "params": s.params,
                "diverged": f"{s.diverged}/{s.n}" if s.diverged else "",
            })  # fmt: skip
        if tests:
            rep.table(tests)
        rep.table(measures)


def spec_part(rep: Report, a: StudyAnalysis, meta: dict) -> None:
    """The baseline config, how to reproduce, the spec's YAML and the machines."""
    spec = a.spec
    rep.heading("Appendix C: the spec, its baseline and how to reproduce")
    rep.paragraph("The baseline every factor changes (a factor with a regime of its own says "
                  "what it changes in its section):")  # fmt: skip
    rep.table(
        [{"field": k, "baseline": csv_value(v)} for k, v in spec.baseline.to_dict().items()
         if k != "seed"]
    )  # fmt: skip
    rep.heading("How to reproduce", 3)
    origin = meta.get("origin") or {}
    source = f"--profile {origin['profile']}" if origin.get("profile") else "study.yaml"
    rep.code(
        f"cnnlab study run {source} --storage {meta['storage']} --name {meta['name']}\n"
        f"cnnlab study report --storage {meta['storage']} --name {meta['name']} --out DIR"
    )
    rep.paragraph("The spec this study ran (study.yaml):")
    rep.code(yaml.safe_dump(spec.source, sort_keys=False).strip())
    machines_part(rep, meta)


def machines_part(rep: Report, meta: dict) -> None:
    """Each environment the workers ran in, with the trials it ran. Training times compare
    within one environment only (a resumed study may run on another CPU)."""
    rep.heading("Machine and versions", 3)
    machines = meta.get("machines") or {"report": environment_info()}
    ran: Counter = meta.get("machine_trials") or Counter()
    busy: Counter = meta.get("machine_seconds") or Counter()
    for name, env in machines.items():
        versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
        count = ran.get(name, 0)
        trials = f" Completed trials: {count}{_worker_time(busy.get(name))}." if ran else ""
        rep.paragraph(
            f"{name}: {env.get('processor')}, {env.get('cpu_count')} CPUs, "
            f"{env.get('platform')}, Python {env.get('python')}; {versions}; worker threads "
            f"{env.get('threads', '?')}; Keras backend {env.get('backend', '?')}.{trials}"
        )
    if busy:
        rep.paragraph(
            f"Worker time: {_hours(sum(busy.values()))} over {sum(ran.values())} completed "
            "trials (each trial's wall time from start to finish, summed; trials of the "
            "planned design only). Workers running side by side share it: uninterrupted, "
            "the study's wall time is about this divided by the number of workers."
        )
    for source, count in sorted((meta.get("reused") or {}).items()):
        rep.paragraph(
            f"{count} of the {sum(ran.values())} completed trials were copied from study "
            f"{source!r}, which had trained exactly the same config, learning rate and seed "
            "(`cnnlab study run --reuse`; results.csv's reused_from names each source trial). "
            "Their times are that study's, in the environment that measured them, and their "
            "worker time is counted above though this study did not spend it again."
        )
    if len(ran) > 1:
        rep.paragraph(
            f"The trials ran in {len(ran)} environments. Training times compare only "
            "within one: each 'trained Nx faster/slower' pairs a level with its reference on "
            "the seeds timed in the same environment, while the time columns, seconds per "
            "epoch and seconds to target average over all of them."
        )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _worker_time(seconds: float | None) -> str:
    return f", {_hours(seconds)} of worker time" if seconds else ""
