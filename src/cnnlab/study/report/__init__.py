"""``cnnlab study report``: report.html (self-contained), report.md and results.csv.

A summary page (status, how to read the verdicts, every comparison with its verdict, factor
importance, best config, baseline, how to reproduce, machine) and one section per factor:
accuracy vs level with 95% intervals, overlaid learning curves, time cost, a table and the
conclusion sentences computed in ``analysis/`` (``verdicts.py``).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cnnlab import plots
from cnnlab.errors import CnnlabError
from cnnlab.files import check_output, write_csv
from cnnlab.machine import environment_info
from cnnlab.report import Report
from cnnlab.runs import run_directory
from cnnlab.study import storage as st
from cnnlab.study.analysis import (
    DEFAULT_MARGIN,
    StudyAnalysis,
    analyse,
    curves,
    epochs_to_target,
    generalization_gap,
)
from cnnlab.study.report.scenarios import (
    batch_part,
    batch_plots,
    factor_cells,
    learning_curves_part,
    optimizer_part,
    regime_part,
    sweep_part,
)
from cnnlab.study.report.statistics import (
    ci,
    fmt_p,
    holm_text,
    importance_part,
    methods_part,
    signed_ci,
    verdicts_part,
    wilcoxon_text,
)
from cnnlab.study.spec import Factor, StudySpec


def write_report(
    storage: str,
    name: str,
    out: str | os.PathLike,
    overwrite: bool = False,
    margin: float = DEFAULT_MARGIN,
) -> Path:
    """Analyse study ``name`` and write its report into ``out``; returns report.html. A
    previous report there is replaced only with ``overwrite``.
    ``margin``: points; a comparison whose 95% CI lies inside +-margin reads "no difference
    detected"."""
    out = check_report_out(out, storage, overwrite)
    store = st.open_storage(storage)
    study = st.load_study(store, name)
    spec = st.stored_spec(study)
    records = st.completed_records(study)
    if not records:
        raise CnnlabError(f"study {name!r} has no completed trials yet; nothing to report")
    labels = st.stored_test_labels(study)
    analysis = analyse(spec, records, labels, margin=margin)
    planned = {t.key for t in spec.plan()[0]}
    records = {k: r for k, r in records.items() if k in planned}  # superseded ones are not read
    meta = {
        "n_test": len(labels)
        if labels is not None
        else len(next(iter(records.values())).test_pred),
        "name": name,
        "storage": st.safe_url(storage),
        "origin": study.user_attrs.get("cnnlab_origin", {}),
        "machines": st.worker_environments(study),
        "machine_trials": Counter(r.environment for r in records.values()),  # completed
    }
    with run_directory(out, overwrite=overwrite) as tmp:
        write_csv(tmp / "results.csv", results_rows(spec, records))
        build_report(analysis, records, meta, tmp).write(tmp)
    return Path(out) / "report.html"


def check_report_out(
    out: str | os.PathLike, storage: str | None = None, overwrite: bool = False
) -> Path:
    """The folder of a study report, checked before any work (``study run --report`` and
    ``demo`` check it before their trials): new, empty, or, with ``overwrite``, a previous
    report, which is replaced; never a folder of other files (a study's own storage, say),
    nor a file, nor the folder of the ``storage`` read (files.check_output)."""
    db = None if storage is None else st.sqlite_path(storage)
    out = check_output("--out", out, directory=True, inputs={"the study storage": db})
    if out.is_dir() and any(out.iterdir()):
        if not (out / "results.csv").is_file():
            raise CnnlabError(
                f"--out {out} holds files that are not a study report; choose a new folder"
            )
        if not overwrite:
            raise CnnlabError(
                f"--out {out} holds a previous report; add --overwrite to replace it, or "
                "choose a new folder"
            )
    return out


# -- results.csv ---------------------------------------------------------------------------


def results_rows(spec: StudySpec, records: dict[str, st.TrialRecord]) -> list[dict[str, Any]]:
    """One row per completed trial: what it belongs to, its config, metrics and timings."""
    trials, cells = spec.plan()
    memberships: dict[str, list[str]] = {}
    for cell in cells:
        for k in cell.keys:
            memberships.setdefault(k, []).append(cell.name)
    rows = []
    for t in trials:  # planned trials: they know where their learning rate comes from
        r = records.get(t.key)
        if r is None:
            continue
        m = r.metrics
        row = {
            "trial": r.number, "key": r.key, "kind": r.kind,
            "cells": "; ".join(memberships.get(r.key, [])) or r.label, "seed": r.seed,
            "test_accuracy": m["test_accuracy"], "val_accuracy": r.value,
            "test_loss": m["test_loss"], "macro_f1": m["macro_f1"],
            "balanced_accuracy": m.get("balanced_accuracy"), "ece": m.get("ece"),
            "train_seconds": m["train_seconds"], "trial_seconds": r.seconds,
            "epochs_run": len(r.history), "params": m.get("params"), "lr_used": r.lr,
            "lr_source": t.lr_source, "lr_sweep": t.lr_sweep,
            "epochs_to_val_target": epochs_to_target(r.history, spec.val_target),
            "final_gap": generalization_gap(r.history),
            "gap_on_clean_train": curves.has_clean_gap(r.history),
            "diverged": bool(m.get("diverged")), "environment": r.environment or "",
        }  # fmt: skip
        row.update({f"config.{k}": _csv(v) for k, v in r.config.items()})
        rows.append(row)
    return rows


def _csv(v: Any) -> Any:
    return ",".join(map(str, v)) if isinstance(v, list) else v


# -- the document --------------------------------------------------------------------------


def build_report(analysis: StudyAnalysis, records, meta: dict, folder: Path) -> Report:
    spec = analysis.spec
    rep = Report(f"cnnlab study {meta['name']}: what changes a CNN on Fashion-MNIST")
    _summary(rep, analysis, meta, folder)
    for factor in spec.factors:
        _factor_section(rep, analysis, records, factor, folder)
    if spec.design == "factorial":
        _factorial_section(rep, analysis, folder)
    methods_part(rep, analysis, meta)
    return rep


def _summary(rep: Report, a: StudyAnalysis, meta: dict, folder: Path) -> None:
    spec = a.spec
    rep.heading("Summary")
    status = "complete" if a.complete == a.planned else "INCOMPLETE (still running or stopped)"
    b = spec.baseline
    design = "one factor at a time around the baseline" if spec.design == "ofat" else "factorial"
    rep.paragraph(
        f"{a.complete} of {a.planned} planned trials completed ({status}). Design: {design}"
        f"; {len(spec.seeds)} seeds ({', '.join(map(str, spec.seeds))}); training images: "
        f"{b.train_limit or 'all (55,000)'}; {b.epochs} epochs; validation split {b.val_size} "
        f"images (factors run in a regime of their own say so in their section); every "
        f"accuracy is on the {meta.get('n_test', 10000):,} test images, in percent."
    )
    if spec.description:
        rep.paragraph(spec.description)
    verdicts_part(rep, a)
    importance_part(rep, a, folder)
    base = a.cells.get("baseline=baseline")
    rep.heading("Baseline and best configuration", 3)
    if base is not None and base.n:
        rep.paragraph(
            f"Baseline test accuracy: {ci(base.accuracy)} (mean [95% CI], "
            f"{base.n} seed{'s' * (base.n != 1)})."
        )
    if a.best is not None:
        rep.paragraph(
            f"Best configuration by mean validation accuracy (among the factors run in the "
            f"study's own regime: validation accuracies compare within one regime only): "
            f"{a.best.cell.name} — validation "
            f"{a.best.val_accuracy.mean:.2f}%, test {ci(a.best.accuracy)} over {a.best.n} "
            f"seed{'s' * (a.best.n != 1)} (chosen on validation, so its test accuracy is an "
            "unbiased estimate).",
            css_class="conclusion",
        )
    rep.table(
        [{"field": k, "baseline": _csv(v)} for k, v in spec.baseline.to_dict().items()
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
    for name, env in machines.items():
        versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
        count = ran.get(name, 0)
        trials = f" Completed trials: {count}." if ran else ""
        rep.paragraph(
            f"{name}: {env.get('processor')}, {env.get('cpu_count')} CPUs, "
            f"{env.get('platform')}, Python {env.get('python')}; {versions}; worker threads "
            f"{env.get('threads', '?')}; Keras backend {env.get('backend', '?')}.{trials}"
        )
    if len(ran) > 1:
        rep.paragraph(
            f"The trials ran in {len(ran)} environments. Training times compare only "
            "within one: each 'trained Nx faster/slower' pairs a level with its reference on "
            "the seeds timed in the same environment, while the time columns, seconds per "
            "epoch and seconds to target average over all of them."
        )


def _factor_section(rep, a: StudyAnalysis, records, factor: Factor, folder: Path) -> None:
    rep.heading(f"Factor: {factor.name}")
    if a.spec.design == "ofat":
        regime_part(rep, a, factor)
    for line in a.conclusions.get(factor.name, []):
        rep.paragraph(line, css_class="conclusion")
    if a.spec.design != "ofat":
        return
    cells = factor_cells(a, factor)
    if not cells:
        rep.paragraph("No completed trials for this factor yet.")
        return
    stem = factor.name.replace(" ", "_")
    labels = [lv for lv, _ in cells]
    ref = dict(cells).get(factor.reference)
    path = plots.errorbar_by_level(
        labels, [s.accuracy.mean for _, s in cells], [s.accuracy.low for _, s in cells],
        [s.accuracy.high for _, s in cells], folder / f"{stem}_accuracy.png",
        "test accuracy (%)", f"{factor.name}: test accuracy (mean, 95% CI)",
        reference=ref.accuracy.mean if ref is not None else None,
    )  # fmt: skip
    rep.image(path, f"Test accuracy per {factor.name} level; dashed: reference {factor.reference}")
    learning_curves_part(rep, a, records, factor, folder)
    path = plots.bars_by_level(
        labels, [s.train_seconds.mean for _, s in cells], folder / f"{stem}_time.png",
        "training seconds", f"{factor.name}: training time per trial (mean, 95% CI)",
        lows=[s.train_seconds.low for _, s in cells],
        highs=[s.train_seconds.high for _, s in cells],
    )  # fmt: skip
    rep.image(path, "Training time (validation and test evaluation excluded)")
    if factor.kind == "batch_size":
        batch_part(rep, a, factor, folder)
        batch_plots(rep, a, folder)
    if factor.kind == "optimizer":
        optimizer_part(rep, a, records, factor, folder)
    if factor.lr_sweep is not None:  # any factor whose levels each tune their learning rate
        sweep_part(rep, a, factor, folder)
    comps = {c.level: c for c in a.comparisons if c.factor == factor.name}
    rows = []
    for lv, s in cells:
        c = comps.get(lv)
        rows.append({
            "level": lv + (" (reference)" if lv == factor.reference else ""), "seeds": s.n,
            "test acc % [95% CI]": ci(s.accuracy),
            "diff vs ref [95% CI]": signed_ci(c.diff) if c else "",
            "verdict": c.verdict if c else "",
            "paired t p (Holm, family)": holm_text(c) if c else "",
            "Wilcoxon p": wilcoxon_text(c) if c else "",
            "McNemar p per seed": ", ".join(fmt_p(m.pvalue) for m in c.mcnemar) if c else "",
            "macro-F1": ci(s.macro_f1, 4), "test loss": ci(s.loss, 3),
            "train s": ci(s.train_seconds, 1), "s/epoch": ci(s.epoch_seconds, 2),
            "gap clean train-val (pts)" if s.clean_gap else "gap train-val (pts)": ci(s.gap),
            f"epochs to val {s.target:.0%}": (
                f"{s.epochs_to_target:g} ({s.reached}/{s.n})" if s.reached
                else f"not reached (0/{s.n})"
            ),
            "lr": f"{s.lr:.3g}" if s.lr else "", "params": s.params,
            "diverged": f"{s.diverged}/{s.n}" if s.diverged else "",
        })  # fmt: skip
    rep.table(rows)


def _factorial_section(rep, a: StudyAnalysis, folder: Path) -> None:
    spec = a.spec
    rep.heading("Factorial cells and interaction")
    rows = []
    for name, s in a.cells.items():
        if s.n:
            rows.append(
                {
                    "cell": name,
                    "seeds": s.n,
                    "test acc % [95% CI]": ci(s.accuracy),
                    "val acc %": s.val_accuracy.mean,
                    "train s": ci(s.train_seconds, 1),
                }
            )
    rep.table(rows)
    f1, f2 = spec.factors[0], spec.factors[1]
    matrix = []
    for lv1 in f1.levels:
        row = []
        for lv2 in f2.levels:
            means = [
                s.accuracy.mean for s in a.cells.values()
                if s.n and dict(s.cell.levels).get(f1.name) == lv1.label
                and dict(s.cell.levels).get(f2.name) == lv2.label
            ]  # fmt: skip
            row.append(float(np.mean(means)) if means else math.nan)
        matrix.append(row)
    path = plots.heatmap(
        matrix, [lv.label for lv in f1.levels], [lv.label for lv in f2.levels],
        folder / "interaction.png", f"Mean test accuracy (%): {f1.name} x {f2.name}",
        xlabel=f2.name, ylabel=f1.name,
    )  # fmt: skip
    rep.image(path, "An interaction shows as rows that do not move in parallel")
