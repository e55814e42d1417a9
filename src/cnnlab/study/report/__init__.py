"""``cnnlab study report``: report.html (self-contained), report.md and results.csv.

This module writes the files (and results.csv's rows); ``sections`` lays out the document a
student reads: takeaways in plain words first, contents, which factor matters most, every
comparison, one section per factor under its name in words, then the appendices
(``statistics``: how verdicts are decided; ``appendix``: detail tables, the spec, machines).
The sentences come from ``analysis/`` (``verdicts.py``, ``takeaways.py``), never by hand.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import check_output, write_csv
from cnnlab.runs import run_directory
from cnnlab.study import storage as st
from cnnlab.study.analysis import (
    DEFAULT_MARGIN,
    analyse,
    curves,
    epochs_to_target,
    generalization_gap,
)
from cnnlab.study.report.appendix import csv_value, machines_part
from cnnlab.study.report.costs import architecture_costs
from cnnlab.study.report.sections import build_report
from cnnlab.study.spec import StudySpec

__all__ = ["build_report", "check_report_out", "machines_part", "results_rows", "write_report"]


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
        "machine_seconds": _seconds_by_environment(records.values()),
        # trials copied from another study (`study run --reuse`): where, how many
        "reused": Counter(
            r.reused_from.rsplit(" trial ", 1)[0] for r in records.values() if r.reused_from
        ),  # fmt: skip
        "costs": architecture_costs(spec),
    }
    with run_directory(out, overwrite=overwrite) as tmp:
        write_csv(tmp / "results.csv", results_rows(spec, records))
        build_report(analysis, records, meta, tmp).write(tmp)
    return Path(out) / "report.html"


def _seconds_by_environment(records: Iterable[st.TrialRecord]) -> Counter:
    seconds: Counter = Counter()
    for r in records:
        seconds[r.environment] += r.seconds or 0.0
    return seconds


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
            "reused_from": r.reused_from or "",
        }  # fmt: skip
        row.update({f"config.{k}": csv_value(v) for k, v in r.config.items()})
        rows.append(row)
    return rows
