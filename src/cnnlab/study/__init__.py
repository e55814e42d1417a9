"""The study engine: factors x levels x seeds, run through Optuna storage, analysed, reported.

    from cnnlab.study import DEFAULT_STORAGE, load_spec, run_study, write_report
    spec = load_spec(profile="quick")
    run_study(spec, DEFAULT_STORAGE)  # sqlite:///studies.db
    write_report(DEFAULT_STORAGE, "quick", "reports/quick")

Rooms: ``spec/`` (spec files and profiles -> planned trials: ``factors``, ``regime``, a
factor's own baseline and budget, ``plan``, ``names``, ``checks``, ``file``), ``analysis/``
(completed trials -> numbers and conclusions: ``stats``, ``curves``, ``sweeps``, ``verdicts``),
``report/`` (HTML/Markdown/CSV, and ``compare`` for two studies), ``storage/`` (Optuna study,
exactly-once queue). The engine at this level: ``run`` (processes, progress) starts ``worker``
processes that train each ``trial``; ``tuning`` (the learning rate a sweep chooses, and how it
brackets it), ``estimate`` (training images and wall time of a plan), ``dashboard``, ``cli``.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.study.defaults import DEFAULT_MARGIN, DEFAULT_STORAGE
from cnnlab.study.spec import StudySpec, load_spec, profile_names

__all__ = [
    "DEFAULT_MARGIN", "DEFAULT_STORAGE", "StudySpec", "demo", "load_spec", "profile_names",
    "run_study", "write_report",
]  # fmt: skip


def run_study(*args, **kwargs):
    from cnnlab.study.run import run_study as _run

    return _run(*args, **kwargs)


run_study.__doc__ = "See :func:`cnnlab.study.run.run_study`."


def write_report(storage: str, name: str, out, **kwargs) -> Path:
    from cnnlab.study.report import write_report as _write

    return _write(storage, name, out, **kwargs)


write_report.__doc__ = "See :func:`cnnlab.study.report.write_report` (``margin=`` in points)."


def demo(
    profile: str = "quick",
    storage: str = DEFAULT_STORAGE,
    out: str | Path | None = None,
    workers: int | None = None,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """What ``make demo`` runs: the ``quick`` study (resumed if interrupted), then its report.
    Returns the path of report.html. ``data_dir``: the Fashion-MNIST folder the trials read;
    ``overwrite``: replace a previous report in ``out``."""
    from cnnlab.study.report import check_report_out
    from cnnlab.study.run import DEFAULT_WORKERS
    from cnnlab.study.run import run_study as _run

    spec = load_spec(profile=profile)
    out = check_report_out(out or Path("reports") / spec.name, storage, overwrite)  # first
    _run(
        spec, storage, spec.name, workers or DEFAULT_WORKERS,
        data_dir=None if data_dir is None else str(data_dir), origin={"profile": profile},
    )  # fmt: skip
    return write_report(storage, spec.name, out, overwrite=overwrite)
