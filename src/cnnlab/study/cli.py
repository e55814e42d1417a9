"""``cnnlab study``: run, status, report, plan. Thin: parse, call the library, print."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab.errors import CnnlabError
from cnnlab.study.names import check_study_name, default_report_dir, shell_command

app = typer.Typer(no_args_is_help=True)

DEFAULT_STORAGE = "sqlite:///studies.db"  # = storage.DEFAULT_STORAGE (kept import-free)

_STORAGE = typer.Option(
    DEFAULT_STORAGE, "--storage", help="Optuna storage URL: sqlite:///FILE or postgresql://..."
)


def _spec(spec: Path | None, profile: str | None):
    from cnnlab.study.spec import load_spec

    if spec is None and profile is None:
        raise CnnlabError("give a spec file (YAML/TOML) or --profile smoke|quick|standard")
    return load_spec(spec, profile)


def _study_name(storage: str, name: str | None) -> str:
    """``--name``, or the only study in the storage."""
    if name:
        return check_study_name(name, "--name")
    from cnnlab.study import storage as st

    names = st.study_names(st.open_storage(storage))
    if len(names) == 1:
        return names[0]
    if not names:
        raise CnnlabError(f"the storage {st._safe_url(storage)} holds no study yet")
    raise CnnlabError(f"--name is required: the storage holds {', '.join(names)}")


@app.command()
def run(
    spec: Path | None = typer.Argument(None, help="Study spec (.yaml/.yml/.toml)."),
    profile: str | None = typer.Option(None, help="Built-in spec: smoke, quick or standard."),
    storage: str = _STORAGE,
    name: str | None = typer.Option(None, help="Study name (default: the spec's name)."),
    workers: int | None = typer.Option(
        None, min=1, help="Parallel worker processes on this machine [default: measured best]."
    ),
    threads: int | None = typer.Option(
        None, min=1, help="CPU threads per worker [default: cores / workers]."
    ),
    data_dir: Path | None = typer.Option(
        None, help="Fashion-MNIST folder (else the usual places)."
    ),
    report: Path | None = typer.Option(None, help="Also write the report into this folder."),
) -> None:
    """Run or resume a study: every trial exactly once, across any number of such commands."""
    from cnnlab.study.run import DEFAULT_WORKERS, run_study

    name = check_study_name(name, "--name") if name else None
    study_spec = _spec(spec, profile)
    origin = {"profile": profile} if profile else {"file": str(spec)}
    summary = run_study(
        study_spec, storage, name, workers or DEFAULT_WORKERS, threads=threads,
        data_dir=str(data_dir) if data_dir else None, origin=origin,
    )  # fmt: skip
    print(
        f"study {summary.name}: {summary.complete}/{summary.planned} trials complete "
        f"({summary.enqueued} queued by this run, {summary.wall_seconds:.0f} s)"
    )
    if report is not None:
        from cnnlab.study.report import write_report

        print(f"report: {write_report(storage, summary.name, report)}")
    else:
        print("next:", shell_command("cnnlab", "study", "report", "--storage", storage,
                                     "--name", summary.name, "--out", "DIR"))  # fmt: skip


@app.command()
def status(
    storage: str = _STORAGE,
    name: str | None = typer.Option(None, help="Study name (default: the only study)."),
) -> None:
    """Done, running, waiting and failed trials, with an ETA."""
    from rich.console import Console
    from rich.table import Table

    from cnnlab.study import storage as st
    from cnnlab.study.run import _duration

    name = _study_name(storage, name)
    study = st.load_study(st.open_storage(storage), name)
    spec = st.stored_spec(study)
    p = st.progress(study.get_trials(deepcopy=False), len(spec.plan()[0]))
    table = Table(title=f"study {name}", show_header=False)
    rows = [
        ("planned trials", p.total), ("done", p.complete), ("running", p.running),
        ("waiting", p.waiting), ("failed (not re-queued)", p.failed),
        ("failed attempts (incl. re-queued)", p.attempts_failed),
        ("mean trial time", f"{p.mean_seconds:.1f} s" if p.mean_seconds else "-"),
        ("ETA", _duration(p.eta_seconds) if p.eta_seconds is not None and p.running else
         ("done" if p.complete + p.failed >= p.total else "no worker running")),
    ]  # fmt: skip
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)
    for label in p.running_labels:
        print(f"running: {label}")


@app.command()
def report(
    storage: str = _STORAGE,
    name: str | None = typer.Option(None, help="Study name (default: the only study)."),
    out: Path = typer.Option(None, help="Output folder [default: reports/NAME]."),
) -> None:
    """Write report.html (self-contained), report.md and results.csv."""
    from cnnlab.study.report import write_report

    name = _study_name(storage, name)
    path = write_report(storage, name, out or default_report_dir(name))
    print(path)


@app.command()
def plan(
    spec: Path | None = typer.Argument(None, help="Study spec (.yaml/.yml/.toml)."),
    profile: str | None = typer.Option(None, help="Built-in spec: smoke, quick or standard."),
) -> None:
    """Show the trials a spec would run (nothing is trained)."""
    s = _spec(spec, profile)
    trials, cells = s.plan()
    sweeps = sum(t.kind == "sweep" for t in trials)
    print(f"{s.name}: {len(trials)} distinct trials ({sweeps} LR-sweep), {len(s.seeds)} seeds")
    for cell in cells:
        print(f"  {cell.name}")
