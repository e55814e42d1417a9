"""``cnnlab study run``: queue a study's trials, start worker processes, show live progress.

The parent never imports TensorFlow: it prepares the Optuna study, starts ``--workers`` worker
processes that split the cores (``configure_threads(cores // N)`` each) and watches the storage.
Stopping it (Ctrl-C, SIGKILL) at any moment loses nothing: run the same command again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import CnnlabError
from cnnlab.study import storage as st
from cnnlab.study.defaults import DEFAULT_STORAGE
from cnnlab.study.spec import StudySpec
from cnnlab.study.spec.plan import planned_work
from cnnlab.study.storage.format import FAIL_REASON_ATTR
from cnnlab.study.terminal import duration as _duration

# Measured on the idle 2-core machine (docs/benchmarks.md, Study engine): the same 16 trials
# took 111 s with two single-threaded workers and 141-147 s with one two-threaded worker
# (1.3x); small networks do not keep two cores busy inside one TensorFlow process.
DEFAULT_WORKERS = 2
STUDY_WAIT_SECONDS = 120.0  # a worker's wait for the study its parent is still creating
POLL_SECONDS = 5.0  # the parent shares the CPU with the workers: poll the storage sparingly


@dataclass
class RunSummary:
    name: str
    storage: str
    planned: int
    enqueued: int  # newly queued by this run (0 when resuming a finished study)
    complete: int
    failed: int
    wall_seconds: float
    reused: int = 0  # of the complete trials, copied from --reuse's study (ever, not this run)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def run_study(
    spec: StudySpec,
    storage: str = DEFAULT_STORAGE,
    name: str | None = None,
    workers: int = DEFAULT_WORKERS,
    *,
    threads: int | None = None,
    trainer: str | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    heartbeat: int | None = None,
    grace: int | None = None,
    origin: dict | None = None,
    reuse: tuple[str, str] | None = None,
) -> RunSummary:
    """Run (or resume) ``spec`` as study ``name`` in ``storage`` with ``workers`` processes.
    ``reuse``: (storage URL, study name) whose completed trials are copied where a trial
    trains exactly what one of them did (``storage.reuse``)."""
    if workers < 1:
        raise CnnlabError(f"--workers must be >= 1, got {workers}")
    st.check_url(storage)  # a bad --storage is refused before any worker starts
    name = name or spec.name
    if reuse is not None:  # refused here, before any worker starts
        st.check_url(reuse[0], must_exist=True)
        if (st.safe_url(reuse[0]), reuse[1]) == (st.safe_url(storage), name):
            raise CnnlabError("--reuse names the study being run; name another study")
        st.ReuseSource(*reuse)
    start = time.perf_counter()
    options = {
        "url": storage, "name": name, "trainer": trainer, "data_dir": data_dir,
        "heartbeat": heartbeat, "grace": grace, "threads": threads or default_threads(workers),
        "parent": os.getpid(), "wait_for_study": STUDY_WAIT_SECONDS, "digest": spec.digest,
        "reuse": list(reuse) if reuse else None,
    }  # fmt: skip
    logs = [
        Path(tempfile.gettempdir()) / f"cnnlab-worker-{os.getpid()}-{i}.log" for i in range(workers)
    ]
    # Workers first: their TensorFlow start-up (about 7 s here) overlaps the study's creation.
    procs = [_spawn(options, log) for log in logs]
    try:
        store = st.open_storage(
            storage, heartbeat or st.HEARTBEAT_SECONDS, grace or st.GRACE_SECONDS
        )
        study, enqueued = st.prepare_study(storage, store, name, spec, origin)
    except BaseException:  # e.g. another spec under this name: stop the workers, no logs left
        for p, log in zip(procs, logs, strict=True):
            p.kill()
            p.wait()
            with contextlib.suppress(OSError):
                log.unlink()
        raise
    keys = planned_work(spec.plan()[0])
    planned = len(keys)
    with _sigterm_as_interrupt():
        try:
            _watch(study, keys, procs, progress, grace or st.GRACE_SECONDS)
        except KeyboardInterrupt:
            _stop(procs)
            raise
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    errors = [_last_error(log) for p, log in zip(procs, logs, strict=True) if p.returncode]
    for p, log in zip(procs, logs, strict=True):
        if p.returncode == 0:
            with contextlib.suppress(OSError):
                log.unlink()
    final = st.study_progress(study, keys, grace or st.GRACE_SECONDS)
    if final.complete + final.failed < planned:
        detail = next((e for e in errors if e), "a worker stopped early")
        raise CnnlabError(
            f"study {name!r} is incomplete ({final.complete}/{planned} trials): {detail}; "
            "run the same command again to resume"
        )
    if final.failed:
        raise CnnlabError(
            f"{final.failed} of {planned} trials failed (see cnnlab study status --name {name}); "
            "run the same command again to retry them"
        )
    copied = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get("reused_from")}  # fmt: skip
    reused = len(copied & set(keys))
    return RunSummary(name, storage, planned, enqueued, final.complete, final.failed,
                      time.perf_counter() - start, reused)  # fmt: skip


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """``kill PID`` stops a run as cleanly as Ctrl-C does."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _spawn(options: dict, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with log.open("wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "cnnlab.study.worker", json.dumps(options)],
            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def _stop(procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """Ask workers to stop (they re-queue their running trial), then make sure they have."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.1, deadline - time.monotonic()))
        if p.poll() is None:
            p.kill()


def _last_error(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        for ln in reversed(lines):
            if ln.startswith("cnnlab: error: "):
                return ln.removeprefix("cnnlab: error: ")
        if lines:
            return f"worker failed: {lines[-1][:300]} (log: {log})"
    return ""


def _watch(
    study: optuna.Study,
    planned: dict[str, int],
    procs: list[subprocess.Popen],
    show: bool,
    grace: float,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    seen: set[int] = set()
    _newly_finished(study.get_trials(deepcopy=False), seen)  # resuming: list only new ones
    columns = (
        TextColumn("[bold]study[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )  # fmt: skip
    with Progress(*columns, console=console, disable=not show, transient=False) as bar:
        task = bar.add_task("", total=len(planned))
        while True:
            alive = any(w.poll() is None for w in procs)
            trials = study.get_trials(deepcopy=False)
            gone = {t.number for t in st.abandoned(study, trials, grace)}
            now = st.progress(trials, planned, gone)
            eta = "" if now.eta_seconds is None else f" · ETA {_duration(now.eta_seconds)}"
            bar.update(
                task, completed=now.complete,
                description=f"running {now.running} · failed {now.failed}{eta}",
            )  # fmt: skip
            if show:
                for line in _newly_finished(trials, seen):
                    bar.console.print(line)
            if not alive:
                return
            deadline = time.monotonic() + POLL_SECONDS
            while time.monotonic() < deadline and any(w.poll() is None for w in procs):
                time.sleep(0.2)  # notice the workers' exit at once, read the storage rarely


def _newly_finished(trials: list[FrozenTrial], seen: set[int]) -> list[str]:
    lines = []
    for t in trials:
        if t.number in seen or t.state not in (TrialState.COMPLETE, TrialState.FAIL):
            continue
        seen.add(t.number)
        label = t.user_attrs.get("label", f"trial {t.number}")
        if t.state == TrialState.COMPLETE:
            acc = t.user_attrs.get("metrics", {}).get("test_accuracy")
            secs = t.user_attrs.get("seconds", 0.0)
            test = "" if t.user_attrs.get("kind") == "sweep" else f" test {acc:.4f}"
            lines.append(f"[green]done[/] {label}: val {t.value:.4f}{test} ({secs:.1f} s)")
        else:
            reason = t.system_attrs.get(FAIL_REASON_ATTR, "")
            lines.append(f"[red]failed[/] {label}: {reason}")
    return lines
