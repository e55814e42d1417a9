"""``cnnlab study``: run, status, report, plan. Thin: parse, call the library, print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from cnnlab.errors import CnnlabError
from cnnlab.runtime import requires
from cnnlab.study.defaults import DEFAULT_MARGIN, DEFAULT_STORAGE
from cnnlab.study.spec import profile_names
from cnnlab.study.spec.names import check_study_name, default_report_dir, shell_command

if TYPE_CHECKING:  # the CLI starts without Optuna; commands import it when they run
    import optuna

    from cnnlab.study.spec import StudySpec

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)

# the built-in specs, as a type: the help lists them and a typo is refused with the list
Profile = Literal[tuple(profile_names())]  # type: ignore[valid-type]
_PROFILE = typer.Option(
    None, metavar=f"[{'|'.join(profile_names())}]", help="Built-in spec instead of a file."
)

_MARGIN = typer.Option(
    DEFAULT_MARGIN,
    min=0.001,
    max=100,
    help="Points: a difference whose 95% CI lies inside +-margin reads 'no difference detected'.",
)
_STORAGE = typer.Option(
    DEFAULT_STORAGE,
    "--storage",
    help="Optuna storage URL: sqlite:///FILE or postgresql+psycopg2://USER:PASSWORD@HOST/DB",
)


def _spec(spec: Path | None, profile: str | None) -> StudySpec:
    from cnnlab.study.spec import load_spec

    if spec is None and profile is None:
        raise CnnlabError("give a spec file (YAML/TOML) or --profile smoke|quick|standard")
    return load_spec(spec, profile)


_REUSE = typer.Option(
    None,
    help="Storage URL of an earlier study: a trial that trains exactly what one of its trials "
    "did (config, rate, seed) is copied from it, not trained again.",
)
_REUSE_NAME = typer.Option(None, help="The study in --reuse (default: its only study).")


def _reuse_source(reuse: str | None, reuse_name: str | None) -> tuple[str, str] | None:
    """(storage URL, study name) of --reuse, checked; None without it."""
    if reuse is None:
        if reuse_name is not None:
            raise CnnlabError("--reuse-name needs --reuse (the storage that holds it)")
        return None
    try:
        return reuse, _open_study(reuse, reuse_name).study_name
    except CnnlabError as e:  # its message names --storage: it is about --reuse's
        message = str(e).replace("--storage", "--reuse")
        raise CnnlabError(message if "--reuse" in message else f"--reuse: {message}") from None


def _open_study(storage: str, name: str | None) -> optuna.Study:
    """Study ``name`` (or the only study) of an existing storage; creates nothing on disk."""
    if name:
        name = check_study_name(name, "--name")
    from cnnlab.study import storage as st

    store = st.open_storage(storage, must_exist=True)
    if not name:
        names = st.study_names(store)
        if not names:
            raise CnnlabError(f"the storage {st.safe_url(storage)} holds no study yet")
        if len(names) > 1:
            raise CnnlabError(f"--name is required: the storage holds {', '.join(names)}")
        name = names[0]
    return st.load_study(store, name)


@app.command()
@requires("keras")  # the workers train Fashion-MNIST models
def run(
    spec: Path | None = typer.Argument(None, help="Study spec (.yaml/.yml/.toml)."),
    profile: Profile | None = _PROFILE,
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
    overwrite: bool = typer.Option(False, help="Replace a previous report in --report."),
    reuse: str | None = _REUSE,
    reuse_name: str | None = _REUSE_NAME,
) -> None:
    """Run or resume a study: every trial exactly once, across any number of such commands."""
    from cnnlab.study import storage as st
    from cnnlab.study.run import DEFAULT_WORKERS, default_threads, run_study
    from cnnlab.study.terminal import print_plan, print_verdicts

    name = check_study_name(name, "--name") if name else None
    if report is not None:
        from cnnlab.study.report import check_report_out

        check_report_out(report, storage, overwrite)  # before the trials, not after them
    study_spec = _spec(spec, profile)
    st.check_url(storage)  # a bad --storage is one line before the plan, too
    source = _reuse_source(reuse, reuse_name)
    origin = {"profile": profile} if profile else {"file": str(spec)}
    workers = workers or DEFAULT_WORKERS
    print_plan(study_spec, workers, threads or default_threads(workers))
    summary = run_study(
        study_spec, storage, name, workers, threads=threads,
        data_dir=str(data_dir) if data_dir else None, origin=origin, reuse=source,
    )  # fmt: skip
    print(
        f"study {summary.name}: {summary.complete}/{summary.planned} trials complete "
        f"({summary.enqueued} queued by this run, {summary.wall_seconds:.0f} s)"
        + (f"; {summary.reused} copied from study {source[1]!r}" if source else "")
    )
    print_verdicts(storage, summary.name)
    if report is not None:
        from cnnlab.study.report import write_report

        print(f"report: {write_report(storage, summary.name, report, overwrite)}")
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
    from cnnlab.study.spec.plan import planned_work
    from cnnlab.study.terminal import duration

    study = _open_study(storage, name)
    p = st.study_progress(study, planned_work(st.stored_spec(study).plan()[0]))
    if p.running and p.eta_seconds is not None:
        eta = duration(p.eta_seconds)
    elif p.complete + p.failed >= p.total:
        eta = "done"
    else:
        eta = "no worker running"
    table = Table(title=f"study {study.study_name}", show_header=False)
    rows = [
        ("planned trials", p.total), ("done", p.complete), ("running", p.running),
        ("abandoned (worker gone; re-queued by the next run)", p.abandoned),
        ("waiting", p.waiting), ("failed (not re-queued)", p.failed),
        ("failed attempts (incl. re-queued)", p.attempts_failed),
        ("superseded (no longer planned: cnnlab changed what they train; not used)",
         p.superseded),
        ("mean trial time", f"{p.mean_seconds:.1f} s" if p.mean_seconds else "-"),
        ("ETA", eta),
    ]  # fmt: skip
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)
    for label in p.running_labels:
        print(f"running: {label}")
    for label in p.abandoned_labels:
        print(f"abandoned: {label} (its worker is gone)")


@app.command()
def report(
    storage: str = _STORAGE,
    name: str | None = typer.Option(None, help="Study name (default: the only study)."),
    out: Path = typer.Option(None, help="Output folder (default: reports/NAME)."),
    margin: float = _MARGIN,
    overwrite: bool = typer.Option(False, help="Replace a previous report in --out."),
) -> None:
    """Write report.html (self-contained), report.md and results.csv."""
    from cnnlab.study.report import write_report

    name = _open_study(storage, name).study_name
    out = out or default_report_dir(name)
    path = write_report(storage, name, out, overwrite=overwrite, margin=margin)
    print(path)


@app.command()
def compare(
    storage_a: str = typer.Argument(..., help="Storage URL of study A (e.g. sqlite:///a.db)."),
    name_a: str = typer.Argument(..., help="Name of study A."),
    storage_b: str = typer.Argument(..., help="Storage URL of study B."),
    name_b: str = typer.Argument(..., help="Name of study B."),
    margin: float = _MARGIN,
    out: Path | None = typer.Option(None, help="Also write the comparison as Markdown here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
) -> None:
    """Does a finding replicate? Every comparison both studies share, side by side."""
    from cnnlab.study.report.compare import (
        check_markdown_out,
        compare_studies,
        format_text,
        write_markdown,
    )

    storages = (storage_a, storage_b)
    if out is not None:
        check_markdown_out(out, storages, overwrite)  # before the studies are analysed
    result = compare_studies(storage_a, name_a, storage_b, name_b, margin=margin)
    print(format_text(result), end="")
    if out is not None:
        print(f"written: {write_markdown(result, out, storages, overwrite)}")


@app.command()
def dashboard(
    storage: str = _STORAGE,
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; anything but loopback exposes the studies."
    ),
    port: int = typer.Option(8080, min=0, max=65535, help="Port (0: any free port)."),
    allow_writes: bool = typer.Option(
        False, help="Let the page change studies (notes, deletion); read-only otherwise."
    ),
) -> None:
    """Open the studies of a storage in optuna-dashboard (learning curves, params, attributes)."""
    from cnnlab.study.dashboard import serve_dashboard

    serve_dashboard(
        storage, host, port, log=lambda m: print(m, flush=True), allow_writes=allow_writes
    )


@app.command()
def plan(
    spec: Path | None = typer.Argument(None, help="Study spec (.yaml/.yml/.toml)."),
    profile: Profile | None = _PROFILE,
    workers: int | None = typer.Option(
        None, min=1, help="Workers the wall-time estimate assumes [default: as study run]."
    ),
    measure: bool = typer.Option(
        True, help="Measure this machine's throughput for the estimate (cached after once)."
    ),
    remeasure: bool = typer.Option(
        False, "--remeasure", help="Measure again and replace the cached throughput."
    ),
    reuse: str | None = _REUSE,
    reuse_name: str | None = _REUSE_NAME,
) -> None:
    """Show the trials a spec would run, its training images and an estimated wall time."""
    from cnnlab.study import estimate
    from cnnlab.study.run import DEFAULT_WORKERS, default_threads
    from cnnlab.study.spec.plan import training_images
    from cnnlab.study.terminal import estimate_line, total_line

    s = _spec(spec, profile)
    trials, cells = s.plan()
    by_key = {t.key: t for t in trials}
    sweeps = sum(t.kind == "sweep" for t in trials)
    print(f"{s.name}: {len(trials)} distinct trials ({sweeps} LR-sweep), {len(s.seeds)} seeds")
    for cell in cells:
        images = training_images(by_key[cell.keys[0]].config)
        print(f"  {cell.name}: {len(cell.keys)} x {images:,} training images")
    print(total_line(trials))
    source = _reuse_source(reuse, reuse_name)
    if source is not None:
        from cnnlab.study import storage as st

        copies = st.ReuseSource(*source).trained(trials)
        print(
            f"reuse: {len(copies)} of these trials ({sum(map(training_images, copies)):,} "
            f"training images) study {source[1]!r} already trained; a trial whose rate its "
            "sweep chooses is matched when it runs"
        )
    workers = workers or DEFAULT_WORKERS
    rate = estimate.throughput(default_threads(workers), workers, measure, remeasure)
    if rate is None:
        print("estimated wall time: not measured (--no-measure, and no cached measurement)")
        return
    print(estimate_line(trials, workers, rate))
