"""The study engine: factors x levels x seeds, run through Optuna storage, analysed, reported.

    from cnnlab.study import DEFAULT_STORAGE, load_spec, run_study, write_report
    spec = load_spec(profile="quick")
    run_study(spec, DEFAULT_STORAGE)  # sqlite:///studies.db
    write_report(DEFAULT_STORAGE, "quick", "reports/quick")

Modules: ``spec`` (spec files and profiles -> planned trials; ``regime``: a factor's own
baseline and budget), ``tuning`` (the learning rate a sweep chooses, and how it brackets it),
``estimate`` (training images and wall time of a plan), ``storage`` (Optuna study, exactly-once
queue), ``worker``/``run`` (processes, progress), ``stats`` (pure statistics), ``curves``
(per-trial learning-curve measures), ``analysis``/``sweeps`` (numbers and conclusions),
``report`` (HTML/Markdown/CSV).
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.study.spec import StudySpec, load_spec, profile_names

# Here rather than in ``storage``: the CLIs read it without loading Optuna.
DEFAULT_STORAGE = "sqlite:///studies.db"
# Half a point of test accuracy: above the seed-to-seed standard deviations measured for the
# full-data presets (0.07-0.41 points, docs/benchmarks.md, Time to accuracy) and the binomial
# standard error of an accuracy near 90% on 10,000 test images (0.3 points); a smaller change
# is not one a reader could act on. A parameter of analyse(), write_report()
# and the report and compare commands, which read it here (this module loads no SciPy).
DEFAULT_MARGIN = 0.5

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
) -> Path:
    """What ``make demo`` runs: the ``quick`` study (resumed if interrupted), then its report.
    Returns the path of report.html."""
    from cnnlab.study.report import check_report_out
    from cnnlab.study.run import DEFAULT_WORKERS
    from cnnlab.study.run import run_study as _run

    spec = load_spec(profile=profile)
    out = check_report_out(out or Path("reports") / spec.name, storage)  # before the trials
    _run(spec, storage, spec.name, workers or DEFAULT_WORKERS, origin={"profile": profile})
    return write_report(storage, spec.name, out)
