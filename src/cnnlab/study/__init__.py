"""The study engine: factors x levels x seeds, run through Optuna storage, analysed, reported.

    from cnnlab.study import load_spec, run_study, write_report
    spec = load_spec(profile="quick")
    run_study(spec, "sqlite:///studies.db")
    write_report("sqlite:///studies.db", "quick", "reports/quick")

Modules: ``spec`` (spec files and profiles -> planned trials), ``storage`` (Optuna study,
exactly-once queue), ``worker``/``run`` (processes, progress), ``stats`` (pure statistics),
``analysis`` (numbers and conclusions), ``report`` (HTML/Markdown/CSV).
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.study.spec import StudySpec, load_spec, profile_names

__all__ = ["StudySpec", "demo", "load_spec", "profile_names", "run_study", "write_report"]


def run_study(*args, **kwargs):
    from cnnlab.study.run import run_study as _run

    return _run(*args, **kwargs)


run_study.__doc__ = "See :func:`cnnlab.study.run.run_study`."


def write_report(storage: str, name: str, out) -> Path:
    from cnnlab.study.report import write_report as _write

    return _write(storage, name, out)


def demo(
    profile: str = "quick",
    storage: str = "sqlite:///studies.db",
    out: str | Path | None = None,
    workers: int | None = None,
) -> Path:
    """What ``make demo`` runs: the ``quick`` study (resumed if interrupted), then its report.
    Returns the path of report.html."""
    from cnnlab.study.run import DEFAULT_WORKERS
    from cnnlab.study.run import run_study as _run

    spec = load_spec(profile=profile)
    _run(spec, storage, spec.name, workers or DEFAULT_WORKERS, origin={"profile": profile})
    return write_report(storage, spec.name, out or Path("reports") / spec.name)
