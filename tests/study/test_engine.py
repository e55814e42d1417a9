"""The study engine with a fake trainer: exactly-once execution, resume, kills, concurrency."""

import collections
import contextlib
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from cnnlab.errors import CnnlabError
from cnnlab.study import load_spec, run_study
from cnnlab.study import storage as st
from cnnlab.study.storage.format import SUPERSEDED


def _trials(storage_url, name):
    return st.load_study(st.open_storage(storage_url), name).get_trials(deepcopy=False)


def assert_each_trial_complete_once(storage_url, name, spec):
    planned = {t.key for t in spec.plan()[0]}
    trials = _trials(storage_url, name)
    done = collections.Counter(
        t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE
    )
    assert set(done) == planned, f"missing: {planned - set(done)}"
    assert max(done.values()) == 1, [k for k, n in done.items() if n > 1]
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    return trials


def _ran(log_path):
    """How many trainings started and ended, from the fake trainer's log."""
    if not os.path.exists(log_path):
        return collections.Counter()
    with open(log_path) as f:
        lines = f.read().split("\n")
    return collections.Counter(ln.split(" ", 2)[0] for ln in lines if ln)


def test_a_run_completes_every_trial_once(finished_fake_study):
    spec = load_spec(finished_fake_study["spec"])
    planned = len(spec.plan()[0])
    summary = finished_fake_study["summary"]
    assert (summary.complete, summary.failed, summary.enqueued) == (planned, 0, planned)
    trials = assert_each_trial_complete_once(finished_fake_study["url"], "fake", spec)
    assert len(trials) == planned
    study = st.load_study(st.open_storage(finished_fake_study["url"]), "fake")
    rec = next(iter(st.completed_records(study).values()))
    assert rec.history and "test_accuracy" in rec.metrics and len(rec.test_pred) == 2000
    assert len(st.stored_test_labels(study)) == 2000


def test_tuned_optimizer_uses_the_best_swept_lr(finished_fake_study):
    trials = _trials(finished_fake_study["url"], "fake")
    # keyed by the rate each sweep trial used: a bracketing round's is chosen when it runs
    sweep = {
        t.user_attrs["lr"]: t
        for t in trials
        if t.user_attrs["kind"] == "sweep" and t.user_attrs["config"]["optimizer"] == "sgd"
    }
    tuned = [t for t in trials if t.user_attrs.get("tune_lr") and t.user_attrs["kind"] == "main"
             and t.user_attrs["config"]["optimizer"] == "sgd"]  # fmt: skip
    assert len(sweep) == 4 and len(tuned) == 3  # a 2-rate grid and 2 bracketing rounds
    best = max(sweep, key=lambda lr: (sweep[lr].value, -lr))
    sweep_end = max(t.datetime_complete for t in sweep.values())
    for t in tuned:
        assert t.user_attrs["lr"] == best and t.user_attrs["lr_choice"]["chosen"] == best
        assert t.datetime_start >= sweep_end  # it waited for its whole sweep
        assert t.user_attrs["seed"] not in {s.user_attrs["seed"] for s in sweep.values()}


def test_resuming_a_finished_study_queues_nothing(finished_fake_study, fake_env):
    spec = load_spec(finished_fake_study["spec"])
    url = finished_fake_study["url"]
    before = len(_trials(url, "fake"))
    again = run_study(spec, url, "fake", 1, trainer="fake_trainer:trainer", progress=False)
    assert again.enqueued == 0 and again.complete == len(spec.plan()[0])
    assert len(_trials(url, "fake")) == before


def test_an_existing_study_with_another_spec_is_refused(finished_fake_study):
    url = finished_fake_study["url"]
    with pytest.raises(CnnlabError, match="different spec"):
        st.prepare_study(url, st.open_storage(url), "fake", load_spec(profile="smoke"))


@pytest.mark.slow
def test_a_failed_trial_is_reported_and_retried_by_the_next_run(tmp_path, fake_trainer,
                                                                 small_spec):  # fmt: skip
    url = f"sqlite:///{tmp_path}/s.db"
    spec = load_spec(small_spec)
    with pytest.raises(CnnlabError, match="2 of 6 trials failed"):
        run_study(spec, url, "small", 1, trainer=fake_trainer.name(fail_kernel=7), progress=False)
    summary = run_study(spec, url, "small", 1, trainer="fake_trainer:trainer", progress=False)
    assert summary.enqueued == 2 and summary.failed == 0
    assert_each_trial_complete_once(url, "small", spec)


@pytest.mark.slow
def test_missing_data_stops_the_run_with_the_workers_message(tmp_path, fake_trainer,
                                                             small_spec):  # fmt: skip
    with pytest.raises(CnnlabError, match=r"incomplete.*Fashion-MNIST not found \(fake\)"):
        run_study(load_spec(small_spec), f"sqlite:///{tmp_path}/s.db", "small", 1,
                  trainer=fake_trainer.name(unavailable=True), progress=False)  # fmt: skip


def _wait_for_running(url, name, min_complete=2, timeout=90):
    """The first RUNNING trial once ``min_complete`` trials are done (polled with one open
    storage: reopening it per poll is slow enough on a loaded machine to miss the moment).
    The runs below stall their trainer after ``min_complete`` trainings (``stall_after``), so
    the moment lasts until the test acts on it."""
    deadline = time.monotonic() + timeout
    study = None
    while time.monotonic() < deadline:
        if study is None and os.path.exists(url.removeprefix("sqlite:///")):
            with contextlib.suppress(CnnlabError):
                study = st.load_study(st.open_storage(url), name)
        if study is not None:
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if done >= min_complete and running:
                return running[0]
            assert not trials or done < len(trials), "the study finished before a trial was caught"
        time.sleep(0.1)
    raise AssertionError("no trial started running in time")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _stalling(fake_trainer, tmp_path):
    """A fake trainer whose third training hangs until its worker is stopped, and one that
    resumes the run normally; both log to the same file."""
    log = str(tmp_path / "log")
    return fake_trainer.name(log=log, stall_after=2), fake_trainer.name(log=log)


@pytest.mark.slow  # whole `study run` processes started, signalled and resumed
def test_sigkill_of_a_worker_mid_trial_then_resume(tmp_path, fake_trainer, small_spec,
                                                   start_fake_run):  # fmt: skip
    url = f"sqlite:///{tmp_path}/s.db"
    stalling, normal = _stalling(fake_trainer, tmp_path)
    run = start_fake_run(small_spec, url, "small", 1, stalling)
    victim = _wait_for_running(url, "small")
    os.kill(victim.system_attrs["cnnlab_worker"]["pid"], signal.SIGKILL)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 2 and "incomplete" in err  # the run says so and exits
    again = start_fake_run(small_spec, url, "small", 1, normal)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    spec = load_spec(small_spec)
    trials = assert_each_trial_complete_once(url, "small", spec)
    killed = [t for t in trials if t.number == victim.number][0]
    assert killed.state == TrialState.FAIL
    assert killed.system_attrs["cnnlab_fail_reason"] == "worker process died"
    ran = _ran(tmp_path / "log")
    assert ran["end"] == len(spec.plan()[0])  # no completed trial was trained twice
    assert ran["start"] - ran["end"] <= 1  # only the killed one never finished


@pytest.mark.slow  # whole `study run` processes started, signalled and resumed
def test_sigkill_of_the_whole_run_then_resume(tmp_path, fake_trainer, small_spec, start_fake_run):
    url = f"sqlite:///{tmp_path}/s.db"
    stalling, normal = _stalling(fake_trainer, tmp_path)
    run = start_fake_run(small_spec, url, "small", 1, stalling, start_new_session=True)
    victim = _wait_for_running(url, "small")
    worker_pid = victim.system_attrs["cnnlab_worker"]["pid"]
    run.kill()  # SIGKILL the parent only: its worker must not outlive it
    run.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker_pid)
    again = start_fake_run(small_spec, url, "small", 1, normal)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert_each_trial_complete_once(url, "small", load_spec(small_spec))


@pytest.mark.slow  # whole `study run` processes started, signalled and resumed
def test_sigint_requeues_the_running_trial(tmp_path, fake_trainer, small_spec, start_fake_run):
    url = f"sqlite:///{tmp_path}/s.db"
    stalling, normal = _stalling(fake_trainer, tmp_path)
    run = start_fake_run(small_spec, url, "small", 1, stalling)
    victim = _wait_for_running(url, "small")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted" in err
    trials = _trials(url, "small")
    stopped = [t for t in trials if t.number == victim.number][0]
    assert stopped.state == TrialState.FAIL
    assert stopped.system_attrs["cnnlab_fail_reason"] == "interrupted"
    assert any(t.state == TrialState.WAITING and t.user_attrs["key"] == victim.user_attrs["key"]
               for t in trials)  # fmt: skip
    again = start_fake_run(small_spec, url, "small", 1, normal)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert_each_trial_complete_once(url, "small", load_spec(small_spec))


def test_a_stale_heartbeat_from_another_machine_requeues_its_trial(tmp_path, small_spec):
    url = f"sqlite:///{tmp_path}/s.db"
    store = st.open_storage(url, heartbeat=1, grace=1)
    study, _ = st.prepare_study(url, store, "small", load_spec(small_spec))
    claim = st.claim_next(study, store)
    elsewhere = {"host": "gpu-box", "machine": "another-machine", "pid": 1, "start": None}
    store.set_trial_system_attr(claim.trial_id, "cnnlab_worker", elsewhere)
    assert st.fail_orphans(study, study.get_trials(), 1) == 0  # alive as far as anyone knows
    assert store.get_trial(claim.trial_id).state == TrialState.RUNNING
    time.sleep(2.5)  # no heartbeat for longer than the grace period
    st.fail_orphans(study, study.get_trials(), 1)
    assert store.get_trial(claim.trial_id).state == TrialState.FAIL
    retry = [t for t in study.get_trials(deepcopy=False)
             if t.user_attrs["key"] == claim.key and t.state == TrialState.WAITING]  # fmt: skip
    assert len(retry) == 1
    # the late worker cannot complete the trial any more
    outcome = {"metrics": {}, "history": [{"val_accuracy": 0.5}], "seconds": 1.0,
               "test_pred": [0], "test_labels": [0]}  # fmt: skip
    assert st.finish(study, claim, outcome) is False


def _concurrent_runs(url, name, tmp_path, fake_trainer, spec_path, start_fake_run):
    trainer = fake_trainer.name(epoch_seconds=0.3, log=str(tmp_path / "log"))
    runs = [start_fake_run(spec_path, url, name, 2, trainer) for _ in range(2)]  # together
    for r in runs:
        _, err = r.communicate(timeout=240)
        assert r.returncode == 0, err
    spec = load_spec(spec_path)
    trials = assert_each_trial_complete_once(url, name, spec)
    ran = _ran(tmp_path / "log")
    assert ran["start"] == ran["end"] == len(spec.plan()[0])  # no trial trained twice
    assert len(trials) == len(spec.plan()[0])  # and none was enqueued twice
    runs = {t.system_attrs["cnnlab_worker"]["parent"] for t in trials}
    assert len(runs) == 2  # both runs really took part


@pytest.fixture
def twelve_trials(tmp_path, small_spec):
    path = tmp_path / "twelve.yaml"
    path.write_text(small_spec.read_text().replace("seeds: 2", "seeds: 4"))
    return path


@pytest.mark.slow  # whole `study run` processes started, signalled and resumed
def test_two_concurrent_runs_on_one_sqlite_file(tmp_path, fake_trainer, twelve_trials,
                                                start_fake_run):  # fmt: skip
    url = f"sqlite:///{tmp_path}/s.db"
    _concurrent_runs(url, "small", tmp_path, fake_trainer, twelve_trials, start_fake_run)


@pytest.mark.postgres
def test_two_concurrent_runs_on_postgresql(tmp_path, fake_trainer, twelve_trials, start_fake_run):
    url = os.environ.get("CNNLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CNNLAB_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server)")
    name = f"small-{uuid.uuid4().hex[:8]}"
    _concurrent_runs(url, name, tmp_path, fake_trainer, twelve_trials, start_fake_run)


def test_a_worker_waits_for_the_study_its_run_is_still_creating(tmp_path, fake_env, small_spec):
    """`cnnlab study run` starts workers before it creates the study (their TensorFlow start-up
    overlaps it): a worker waits for the study, and without a wait it names the missing one."""
    import threading

    from cnnlab.study.worker import work

    fake_env.syspath_prepend(str(Path(__file__).parent))
    url = f"sqlite:///{tmp_path}/s.db"
    spec = load_spec(small_spec)
    with pytest.raises(CnnlabError, match="no study named 'small'"):
        work(url, "small", trainer="fake_trainer:trainer", log=lambda m: None)

    def create_later():
        time.sleep(1.0)
        st.prepare_study(url, st.open_storage(url), "small", spec)

    creator = threading.Thread(target=create_later)
    creator.start()
    summary = work(url, "small", trainer="fake_trainer:trainer", log=lambda m: None,
                   wait_for_study=60)  # fmt: skip
    creator.join()
    assert summary.completed == len(spec.plan()[0])
    assert_each_trial_complete_once(url, "small", spec)
    # a worker sent for another spec under the same name claims nothing: it waits, then says so
    with pytest.raises(CnnlabError, match="holds another spec"):
        work(url, "small", trainer="fake_trainer:trainer", log=lambda m: None,
             wait_for_study=0.5, digest="not-" + spec.digest)  # fmt: skip
    assert work(url, "small", trainer="fake_trainer:trainer", log=lambda m: None,
                digest=spec.digest).completed == 0  # fmt: skip


OPT_SPEC = """
name: opt
seeds: 1
budget: {train_limit: 1000, epochs: 2, val_size: 500}
factors:
  optimizer: {levels: [adam, adamw], lr_sweep: {multipliers: [0.5, 2.0], epochs: 1}}
"""


@pytest.mark.slow
def test_queued_trials_an_older_plan_held_are_superseded_and_never_run(
    tmp_path, fake_env, fake_trainer, run_cli
):
    """A newer cnnlab that trains a level differently (here: AdamW's default weight decay)
    gives it new keys; the old keys still queued are failed as superseded, not run, and the
    progress counts only what the plan holds."""
    from cnnlab.fmnist import config

    path = tmp_path / "opt.yaml"
    path.write_text(OPT_SPEC)
    url = f"sqlite:///{tmp_path}/s.db"
    default = config.DEFAULT_WEIGHT_DECAY
    fake_env.setattr(config, "DEFAULT_WEIGHT_DECAY", {"adamw": 0.0})  # an older cnnlab's plan
    old = {t.key for t in load_spec(path).plan()[0]}
    st.prepare_study(url, st.open_storage(url), "opt", load_spec(path))
    fake_env.setattr(config, "DEFAULT_WEIGHT_DECAY", default)
    spec = load_spec(path)
    new = {t.key for t in spec.plan()[0]}
    gone = old - new
    assert gone and all("adamw" in t.user_attrs["label"] for t in _trials(url, "opt")
                        if t.user_attrs["key"] in gone)  # fmt: skip
    trainer = fake_trainer.name(log=str(tmp_path / "log"))
    run_study(spec, url, "opt", 1, trainer=trainer, progress=False)
    trials = assert_each_trial_complete_once(url, "opt", spec)
    stale = [t for t in trials if t.user_attrs["key"] in gone]
    assert len(stale) == len(gone)
    assert {t.state for t in stale} == {TrialState.FAIL}
    assert {t.system_attrs["cnnlab_fail_reason"] for t in stale} == {SUPERSEDED}
    ran = _ran(tmp_path / "log")
    assert ran["start"] == ran["end"] == len(new)  # only what the plan holds was trained
    r = run_cli("study", "status", "--storage", url)
    assert r.returncode == 0, r.stderr
    rows = dict(re.findall(r"│ (.+?)\s+│ (\S+)\s+│", r.stdout))
    assert rows["planned trials"] == rows["done"] == str(len(new))
    assert rows["failed (not re-queued)"] == "0"
    assert rows[next(k for k in rows if k.startswith("superseded"))] == str(len(gone))


def test_each_trial_names_the_environment_that_ran_it(finished_fake_study):
    """Hosts keep their names while the CPU under them changes between sessions: a trial
    names its environment (host and a digest of machine and versions), recorded once."""
    study = st.load_study(st.open_storage(finished_fake_study["url"]), "fake")
    environments = st.worker_environments(study)
    named = {r.environment for r in st.completed_records(study).values()}
    assert len(named) == 1 and named <= set(environments)
    name = named.pop()
    assert "@" in name and environments[name]["processor"] and environments[name]["cpu_count"]


def test_a_re_queued_sweep_trial_is_claimed_before_any_main_trial(tmp_path):
    """The tuned trials of every seed wait for their sweep: a sweep trial re-queued after an
    interruption (its copy numbered after every main trial) runs next, not last."""
    path = tmp_path / "opt.yaml"
    path.write_text(OPT_SPEC)
    url = f"sqlite:///{tmp_path}/s.db"
    store = st.open_storage(url)
    study, _ = st.prepare_study(url, store, "opt", load_spec(path))
    first = st.claim_next(study, store)
    assert first.kind == "sweep"
    st.finish(study, first, None, "interrupted", requeue_after=True)
    sweeps_claimed = []
    while (claim := st.claim_next(study, store)) is not None and claim.kind == "sweep":
        sweeps_claimed.append(claim.key)
        st.finish(study, claim, None, "stop here")
    assert first.key in sweeps_claimed  # the copy came before the first main trial
