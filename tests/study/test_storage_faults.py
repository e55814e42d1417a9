"""Bad ``--storage`` values and abandoned trials, as a user meets them on the command line.

Each error is one ``cnnlab: error:`` line and exit code 2, with no traceback, and leaves every
file as it was: nothing created, nothing changed.
"""

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnlab.study import load_spec
from cnnlab.study import storage as st
from cnnlab.study.spec.plan import planned_work
from cnnlab_testing import cnnlab


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def assert_refused(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_storage_is_refused_before_any_worker_starts(run_cli, tmp_path, url):
    """Each worker process would get an empty database of its own, and the run would wait for
    them at 0/N (in a child of its own, so that a regression times out instead of waiting)."""
    proc = cnnlab("study", "run", "--profile", "smoke", "--storage", url, cwd=tmp_path, timeout=60)
    assert_refused(proc, "in-memory")
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize(
    "command", [["run", "--profile", "smoke"], ["status"], ["report", "--name", "smoke"]]
)
def test_a_storage_path_that_is_a_folder_is_refused(run_cli, tmp_path, command):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "thesis.tex").write_text("precious")
    before = snapshot(tmp_path)
    proc = run_cli("study", *command, "--storage", "sqlite:///studies")
    assert_refused(proc, "studies is a folder")
    assert snapshot(tmp_path) == before  # no lock file beside it either


@pytest.mark.parametrize("command", [["status"], ["status", "--name", "quick"], ["report"]])
def test_reading_a_storage_that_does_not_exist_creates_no_database(run_cli, tmp_path, command):
    proc = run_cli("study", *command, "--storage", "sqlite:///new.db")
    assert_refused(proc, "new.db does not exist")
    assert snapshot(tmp_path) == {}


def test_the_help_names_a_postgresql_driver_that_is_installed(run_cli):
    out = run_cli("study", "status", "--help").stdout
    drivers = re.findall(r"postgresql\+(\w+)://", out)
    assert drivers, out  # a bare postgresql:// would pick a driver that may not be there
    assert all(importlib.util.find_spec(d) for d in drivers)


OUTCOME = {
    "metrics": {"test_accuracy": 0.8}, "history": [{"val_accuracy": 0.8}], "seconds": 1.0,
    "test_pred": np.zeros(10, dtype=int), "test_labels": np.zeros(10, dtype=int),
}  # fmt: skip


def _study_with_one_running_trial(url, spec_path, worker):
    """A study of 6 trials: 2 done, 1 running by ``worker``, 3 waiting."""
    store = st.open_storage(url)
    study, _ = st.prepare_study(url, store, "small", load_spec(spec_path))
    for _ in range(2):
        assert st.finish(study, st.claim_next(study, store), OUTCOME)
    claim = st.claim_next(study, store)
    store.set_trial_system_attr(claim.trial_id, "cnnlab_worker", worker)
    return study, claim


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_status_reports_a_killed_workers_trial_as_abandoned_without_an_eta(
    run_cli, tmp_path, small_spec
):
    url = f"sqlite:///{tmp_path}/s.db"
    dead = dict(st.worker_identity(), pid=_dead_pid(), start=None)
    _, claim = _study_with_one_running_trial(url, small_spec, dead)
    before = snapshot(tmp_path)
    proc = run_cli("study", "status", "--storage", url)
    assert proc.returncode == 0, proc.stderr
    assert f"abandoned: {claim.label}" in proc.stdout
    assert f"running: {claim.label}" not in proc.stdout
    eta = re.search(r"│ ETA\s+│ (.+?)\s*│", proc.stdout)
    assert eta and eta.group(1) == "no worker running", proc.stdout  # not a few seconds
    assert snapshot(tmp_path) == before  # status only reads


def test_a_trial_whose_remote_heartbeat_stopped_counts_as_abandoned(tmp_path, small_spec):
    url = f"sqlite:///{tmp_path}/s.db"
    elsewhere = {"host": "gpu-box", "machine": "another-machine", "pid": 1, "start": None}
    study, claim = _study_with_one_running_trial(url, small_spec, elsewhere)
    planned = planned_work(load_spec(small_spec).plan()[0])
    live = st.study_progress(study, planned, grace=1)
    assert (live.running, live.abandoned) == (1, 0) and live.eta_seconds is not None
    time.sleep(2.5)  # no heartbeat for longer than the grace period
    stale = st.study_progress(
        st.load_study(st.open_storage(url, heartbeat=1, grace=1), "small"), planned, grace=1
    )
    assert (stale.running, stale.abandoned) == (0, 1) and stale.eta_seconds is None
    assert stale.abandoned_labels == [claim.label]


def _trial(number, key, state, seconds=None):
    import datetime as dt

    from optuna.trial import FrozenTrial

    start = dt.datetime(2026, 1, 1)
    done = None if seconds is None else start + dt.timedelta(seconds=seconds)
    return FrozenTrial(number=number, state=state, value=0.5 if done else None,
                       datetime_start=start, datetime_complete=done, params={},
                       distributions={}, user_attrs={"key": key, "label": key},
                       system_attrs={}, intermediate_values={}, trial_id=number)  # fmt: skip


def test_the_eta_weighs_what_is_left_by_its_training_images_not_by_the_mean_trial():
    """Two done trials trained 1,000 images in 100 s (10 images/s); 2,000 images are left for
    one live worker: 200 s, where the mean trial (50 s) x 2 trials left would say 100 s."""
    from optuna.trial import TrialState as S

    planned = {"a": 100, "b": 900, "c": 1000, "d": 1000, "e": 5000}
    trials = [
        _trial(0, "a", S.COMPLETE, 10),
        _trial(1, "b", S.COMPLETE, 90),
        _trial(2, "c", S.RUNNING),
        _trial(3, "d", S.WAITING),
        _trial(4, "e", S.FAIL),  # failed for good: not left
        _trial(5, "old", S.COMPLETE, 1),  # superseded: no longer planned, not read
    ]
    p = st.progress(trials, planned)
    assert (p.total, p.complete, p.running, p.waiting, p.failed) == (5, 2, 1, 1, 1)
    assert p.superseded == 1 and p.mean_seconds == 50
    assert p.eta_seconds == pytest.approx(200)
    requeued = [*trials, _trial(6, "e", S.WAITING)]  # the failed key queued again is left
    assert st.progress(requeued, planned).eta_seconds == pytest.approx(700)
    two = [*trials, _trial(7, "d2", S.RUNNING)]
    assert st.progress(two, {**planned, "d2": 0}).eta_seconds == pytest.approx(100)
