"""Reading a study back: its spec, completed trials, test labels, worker machines, progress."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import StudySpec, spec_from_source
from cnnlab.study.storage import _optuna
from cnnlab.study.storage.format import (
    DIGEST_ATTR,
    ENV_ATTR,
    ENV_PREFIX,
    LABELS_ATTR,
    PRED_ATTR,
    SPEC_ATTR,
    SPEC_FORMAT,
    SPEC_FORMAT_ATTR,
    jsonable,
    unpack,
)
from cnnlab.study.storage.liveness import GRACE_SECONDS, abandoned
from cnnlab.study.tuning import LrChoice


def stored_spec(study: optuna.Study) -> StudySpec:
    source = study.user_attrs.get(SPEC_ATTR)
    if source is None:
        raise CnnlabError(f"study {study.study_name!r} was not created by cnnlab study run")
    if study.user_attrs.get(SPEC_FORMAT_ATTR) != SPEC_FORMAT:
        raise CnnlabError(
            f"study {study.study_name!r} was stored by an older cnnlab (spec format "
            f"{study.user_attrs.get(SPEC_FORMAT_ATTR, 1)}, this version reads {SPEC_FORMAT})"
        )
    return spec_from_source(source)


def spec_digest(study: optuna.Study) -> str | None:
    """The digest of the spec a study was created with (None while it is being created)."""
    return study.user_attrs.get(DIGEST_ATTR)


@dataclass
class TrialRecord:
    key: str
    kind: str
    label: str
    seed: int
    number: int
    config: dict[str, Any]
    lr: float | None
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    value: float  # final validation accuracy
    test_pred: np.ndarray
    lr_choice: LrChoice | None
    environment: str | None = None  # record_environment's name (mark_environment)
    reused_from: str | None = None  # "STUDY trial N": copied from another study (reuse.py)


def completed_records(study: optuna.Study) -> dict[str, TrialRecord]:
    """The completed trial of each key (the first, should a misconfigured setup allow two)."""
    out: dict[str, TrialRecord] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        if a.get("key") in out or PRED_ATTR not in t.system_attrs:
            continue
        out[a["key"]] = TrialRecord(
            key=a["key"], kind=a["kind"], label=a["label"], seed=int(a["seed"]),
            number=t.number, config=a["config"], lr=a.get("lr"), metrics=a["metrics"],
            history=a["history"], seconds=float(a["seconds"]), value=float(t.value),
            test_pred=unpack(t.system_attrs[PRED_ATTR]), lr_choice=a.get("lr_choice"),
            environment=t.system_attrs.get(ENV_ATTR), reused_from=a.get("reused_from"),
        )  # fmt: skip
    return out


def stored_test_labels(study: optuna.Study) -> np.ndarray | None:
    """The test labels every trial was scored against (None before the first completes)."""
    text = _optuna.study_system_attrs(study).get(LABELS_ATTR)
    return None if text is None else unpack(text)


def record_environment(study: optuna.Study, info: dict[str, Any]) -> str:
    """Machine and versions of a worker, once per distinct environment, for the report; its
    name is returned for the trials it runs. Hosts keep their names from one session to the
    next while the CPU under them changes, so the name holds a digest of the environment."""
    info = jsonable(info)
    text = json.dumps(info, sort_keys=True, default=str)
    name = f"{socket.gethostname()}@{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    if f"{ENV_PREFIX}{name}" not in _optuna.study_system_attrs(study):
        _optuna.set_study_system_attr(study, f"{ENV_PREFIX}{name}", info)
    return name


def adopt_environment(study: optuna.Study, name: str | None, info: Any) -> str | None:
    """Record another study's environment under its own name (a trial copied from that study
    keeps the environment that timed it); None when the source trial named none."""
    if not name:
        return None
    if info is not None and f"{ENV_PREFIX}{name}" not in _optuna.study_system_attrs(study):
        _optuna.set_study_system_attr(study, f"{ENV_PREFIX}{name}", jsonable(info))
    return name


def mark_environment(study: optuna.Study, trial_id: int, name: str) -> None:
    """Name the environment that runs a claimed trial: its times compare only with times
    taken in the same one."""
    _optuna.set_trial_system_attr(study, trial_id, ENV_ATTR, name)


def worker_environments(study: optuna.Study) -> dict[str, Any]:
    attrs = _optuna.study_system_attrs(study)
    return {k.removeprefix(ENV_PREFIX): v for k, v in sorted(attrs.items())
            if k.startswith(ENV_PREFIX)}  # fmt: skip


@dataclass
class Progress:
    total: int  # planned keys
    complete: int
    running: int  # RUNNING trials whose worker is alive
    abandoned: int  # RUNNING trials whose worker is gone (re-queued by the next worker)
    waiting: int
    failed: int  # keys whose latest attempt failed and that are not queued again
    attempts_failed: int  # failed attempts, including re-queued ones
    superseded: int  # stored keys the plan no longer holds (never run again, never read)
    mean_seconds: float | None  # per completed trial
    eta_seconds: float | None  # None while no live worker runs a trial, or none has completed
    running_labels: list[str]
    abandoned_labels: list[str]


def progress(
    trials: list[FrozenTrial],
    planned: Mapping[str, float],
    abandoned_numbers: Collection[int] = (),
) -> Progress:
    """Counts and an ETA over the ``planned`` keys, each with its work (training images).

    The ETA is the work left over the rate of the work done (per worker second), shared by the
    live workers: a study of short sweeps and long main trials is not judged by its mean
    trial. ``abandoned_numbers``: RUNNING trials whose worker is gone; they count as neither
    running nor in the ETA. Trials of keys the plan no longer holds count only as superseded."""
    superseded = {t.user_attrs.get("key") for t in trials} - planned.keys()
    state_of: dict[str, set[TrialState]] = {}
    for t in trials:
        state_of.setdefault(t.user_attrs.get("key"), set()).add(t.state)
    state_of = {k: s for k, s in state_of.items() if k in planned}
    trials = [t for t in trials if t.user_attrs.get("key") in planned]
    done = {k for k, s in state_of.items() if TrialState.COMPLETE in s}
    complete = len(done)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    gone = [t for t in running if t.number in abandoned_numbers]
    live_running = [t for t in running if t.number not in abandoned_numbers]
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    live = {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}
    failed_for_good = {k for k, s in state_of.items() if TrialState.FAIL in s and not s & live}
    failed = len(failed_for_good)
    durations = {
        t.user_attrs.get("key"): (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state == TrialState.COMPLETE and t.datetime_start and t.datetime_complete
    }
    mean = float(np.mean(list(durations.values()))) if durations else None
    settled = done | failed_for_good
    left = sum(w for k, w in planned.items() if k not in settled)
    done_work, done_seconds = sum(planned[k] for k in durations), sum(durations.values())
    eta = None
    if done_seconds > 0 and done_work > 0 and live_running:
        eta = left / (done_work / done_seconds) / len(live_running)
    return Progress(
        total=len(planned), complete=complete, running=len(live_running), abandoned=len(gone),
        waiting=waiting, failed=failed,
        attempts_failed=sum(t.state == TrialState.FAIL for t in trials),
        superseded=len(superseded), mean_seconds=mean,
        eta_seconds=eta, running_labels=[t.user_attrs.get("label", "?") for t in live_running],
        abandoned_labels=[t.user_attrs.get("label", "?") for t in gone],
    )  # fmt: skip


def study_progress(
    study: optuna.Study, planned: Mapping[str, float], grace: float = GRACE_SECONDS
) -> Progress:
    """``progress`` of the study as stored now, its workers' liveness checked (read only)."""
    trials = study.get_trials(deepcopy=False)
    gone = {t.number for t in abandoned(study, trials, grace)}
    return progress(trials, planned, gone)
