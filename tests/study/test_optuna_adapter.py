"""What cnnlab relies on from Optuna's private API (``cnnlab.study.storage._optuna``).

The exactly-once queue is built on these behaviours. An Optuna release that changes one of them
must fail here, before it fails a study: then update the adapter (and the version bound in
pyproject.toml) together.
"""

import math
import time

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from cnnlab.study.storage import _optuna, quiet_optuna


def _rdb(url, grace=30, callback=None):
    return optuna.storages.RDBStorage(
        url, heartbeat_interval=1, grace_period=grace, heartbeat_stale_trial_callback=callback
    )


@pytest.fixture(autouse=True)
def quiet():
    quiet_optuna()  # heartbeats are "experimental" in Optuna


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/s.db"


def _study_with_waiting_trials(url, n=2, **rdb):
    storage = _rdb(url, **rdb)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params={"seed": i},
            distributions={"seed": IntDistribution(0, n)}, user_attrs={"key": f"k{i}"},
        ))  # fmt: skip
    return storage, study


def test_a_listed_trial_has_the_id_the_storage_reads_it_by(url):
    _, study = _study_with_waiting_trials(url)
    for t in study.get_trials(deepcopy=False):
        again = _optuna.get_trial(study, _optuna.trial_id(t))
        assert (again.number, again.user_attrs) == (t.number, t.user_attrs)
    ids = {_optuna.trial_id(t) for t in study.get_trials(deepcopy=False)}
    assert len(ids) == 2


def test_running_is_taken_only_from_waiting(url):
    """The claim: a second worker trying the same trial gets False, not the trial."""
    _, study = _study_with_waiting_trials(url)
    tid = _optuna.trial_id(study.get_trials()[0])
    assert _optuna.set_state(study, tid, TrialState.RUNNING) is True
    assert _optuna.get_trial(study, tid).datetime_start is not None
    assert _optuna.set_state(study, tid, TrialState.RUNNING) is False
    other_process = optuna.load_study(study_name="s", storage=_rdb(url))
    assert _optuna.set_state(other_process, tid, TrialState.RUNNING) is False


def test_a_claim_by_another_process_is_seen_in_the_next_listing(url):
    """claim_next decides from ``study.get_trials()``: Optuna's trial cache must re-read
    unfinished trials, or two workers would both see one trial WAITING."""
    _, study = _study_with_waiting_trials(url)
    assert {t.state for t in study.get_trials(deepcopy=False)} == {TrialState.WAITING}
    other_process = optuna.load_study(study_name="s", storage=_rdb(url))
    tid = _optuna.trial_id(other_process.get_trials()[0])
    assert _optuna.set_state(other_process, tid, TrialState.RUNNING)
    states = {_optuna.trial_id(t): t.state for t in study.get_trials(deepcopy=False)}
    assert states[tid] == TrialState.RUNNING


def test_a_finished_trial_accepts_no_more_changes(url):
    """A late worker cannot complete, fail or annotate a trial that was failed meanwhile."""
    _, study = _study_with_waiting_trials(url)
    tid = _optuna.trial_id(study.get_trials()[0])
    assert _optuna.set_state(study, tid, TrialState.RUNNING)
    assert _optuna.set_state(study, tid, TrialState.COMPLETE, [0.9])
    assert _optuna.get_trial(study, tid).value == 0.9
    with pytest.raises(UpdateFinishedTrialError):
        _optuna.set_state(study, tid, TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):
        _optuna.set_trial_system_attr(study, tid, "cnnlab_fail_reason", "late")
    with pytest.raises(UpdateFinishedTrialError):
        _optuna.set_trial_user_attr(study, tid, "metrics", {})
    with pytest.raises(UpdateFinishedTrialError):
        _optuna.set_trial_intermediate_value(study, tid, 1, 0.5)


def test_attributes_written_through_the_adapter_are_read_back_publicly(url):
    _, study = _study_with_waiting_trials(url)
    tid = _optuna.trial_id(study.get_trials()[0])
    _optuna.set_trial_system_attr(study, tid, "cnnlab_worker", {"pid": 7, "host": "h"})
    _optuna.set_trial_user_attr(study, tid, "metrics", {"test_accuracy": 0.9})
    _optuna.set_study_system_attr(study, "cnnlab_test_labels", "eJwDAAAAAAE=")
    other_process = optuna.load_study(study_name="s", storage=_rdb(url))
    trial = next(t for t in other_process.get_trials() if _optuna.trial_id(t) == tid)
    assert trial.system_attrs["cnnlab_worker"] == {"pid": 7, "host": "h"}
    assert trial.user_attrs["metrics"] == {"test_accuracy": 0.9}
    assert _optuna.study_system_attrs(other_process)["cnnlab_test_labels"] == "eJwDAAAAAAE="


def test_intermediate_values_written_by_id_are_the_public_learning_curve(url):
    """What optuna-dashboard plots as a trial's learning curve: ``trial.intermediate_values``,
    step -> value, NaN included (a diverged epoch)."""
    _, study = _study_with_waiting_trials(url)
    tid = _optuna.trial_id(study.get_trials()[0])
    assert _optuna.set_state(study, tid, TrialState.RUNNING)
    for step, value in ((1, 0.7), (2, 0.8), (3, float("nan"))):
        _optuna.set_trial_intermediate_value(study, tid, step, value)
    assert _optuna.set_state(study, tid, TrialState.COMPLETE, [0.8])
    other_process = optuna.load_study(study_name="s", storage=_rdb(url))
    trial = next(t for t in other_process.get_trials() if _optuna.trial_id(t) == tid)
    assert list(trial.intermediate_values) == [1, 2, 3]
    assert trial.intermediate_values[1] == 0.7 and trial.intermediate_values[2] == 0.8
    assert math.isnan(trial.intermediate_values[3])


def test_stale_trials_are_listed_without_being_failed(url):
    storage, study = _study_with_waiting_trials(url, n=3, grace=1)
    beating, silent, never = (_optuna.trial_id(t) for t in study.get_trials())
    for tid in (beating, silent, never):
        assert _optuna.set_state(study, tid, TrialState.RUNNING)
    storage.record_heartbeat(silent)
    time.sleep(2.5)  # longer than the grace period
    storage.record_heartbeat(beating)
    assert _optuna.stale_trial_ids(study) == [silent]  # a trial that never beat is not stale
    assert _optuna.get_trial(study, silent).state == TrialState.RUNNING


def test_failing_stale_trials_calls_the_storage_callback_with_the_failed_trial(url):
    """How a trial of a worker on another machine gets re-queued (``requeue_stale``)."""
    seen = []
    storage, study = _study_with_waiting_trials(
        url, grace=1, callback=lambda s, t: seen.append((s.study_name, t.number, t.state))
    )
    trial = study.get_trials()[0]
    assert _optuna.set_state(study, _optuna.trial_id(trial), TrialState.RUNNING)
    storage.record_heartbeat(_optuna.trial_id(trial))
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert seen == [("s", trial.number, TrialState.FAIL)]


def test_a_storage_without_heartbeats_has_no_stale_trials(url):
    study = optuna.create_study(storage=optuna.storages.RDBStorage(url), study_name="plain")
    assert _optuna.stale_trial_ids(study) == []
