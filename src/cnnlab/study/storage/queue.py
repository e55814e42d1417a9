"""The queue protocol: every planned trial is an Optuna trial, and each runs exactly once.

- enqueue: each planned trial has a deterministic key (see ``spec.py``); a key is enqueued only
  when it has no waiting, running or complete trial. A waiting trial whose key the plan no
  longer holds (a newer cnnlab trains that level differently, e.g. with another default) is
  failed as superseded, so that nothing runs what no cell will read;
- claim: WAITING -> RUNNING through Optuna's storage, which takes RUNNING only from WAITING;
- requeue: a worker that dies leaves a RUNNING trial behind. It is failed and a fresh copy is
  enqueued when its worker is gone (see ``liveness.py``);
- finish: a trial can only be completed while RUNNING, so a late worker cannot complete a trial
  that was re-queued meanwhile.

Every step runs under the study's lock (``locking.py``), so two workers starting at once can
neither enqueue a key twice nor claim one trial together.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import PlannedTrial, StudySpec
from cnnlab.study.storage import _optuna
from cnnlab.study.storage.format import (
    DIGEST_ATTR,
    FAIL_REASON_ATTR,
    LABELS_ATTR,
    ORIGIN_ATTR,
    PLAN_ATTRS,
    PRED_ATTR,
    RETRY_OF_ATTR,
    SPEC_ATTR,
    SPEC_FORMAT,
    SPEC_FORMAT_ATTR,
    SUPERSEDED,
    WORKER_ATTR,
    jsonable,
    pack,
    plain,
)
from cnnlab.study.storage.liveness import abandoned, worker_identity
from cnnlab.study.storage.locking import study_lock
from cnnlab.study.tuning import LrChoice, choose_lr

_LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)

# -- enqueue -------------------------------------------------------------------------------


def prepare_study(
    url: str,
    storage: optuna.storages.BaseStorage,
    name: str,
    spec: StudySpec,
    origin: dict[str, Any] | None = None,
) -> tuple[optuna.Study, int]:
    """Create or load the study and enqueue every planned trial not yet queued, run or done.

    Returns the study and how many trials were enqueued. A study that exists under ``name``
    with a different spec is refused rather than mixed.
    """
    trials, _ = spec.plan()
    with study_lock(url, name):
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True
        )
        digest = study.user_attrs.get(DIGEST_ATTR)
        if digest is None:
            study.set_user_attr(SPEC_ATTR, spec.source)
            study.set_user_attr(SPEC_FORMAT_ATTR, SPEC_FORMAT)
            study.set_user_attr(DIGEST_ATTR, spec.digest)
            study.set_metric_names(["val_accuracy"])
            study.set_user_attr(ORIGIN_ATTR, origin or {})
        elif digest != spec.digest:
            raise CnnlabError(
                f"study {name!r} already exists in this storage with a different spec; "
                "use another --name (or the same spec to resume)"
            )
        added = _enqueue_missing(study, trials)
    return study, added


def _param_space(trials: list[PlannedTrial]) -> dict[str, BaseDistribution]:
    """Config fields that vary across the study become Optuna params, so optuna-dashboard can
    plot accuracy against them; the learning rate stays an attribute (a tuned one is unknown
    until its sweep has run). So does the seed: it is a replicate, not a design choice, and as
    a param optuna-dashboard ranked it the second most important "hyperparameter" (issue 13).
    Nothing reads params back: the seed is read from the ``seed`` user attribute."""
    values: dict[str, set[str]] = {}
    for t in trials:
        for k, v in t.config.items():
            values.setdefault(k, set()).add(json.dumps(v))
    space: dict[str, BaseDistribution] = {}
    for k, vs in values.items():
        if len(vs) > 1 and k not in ("lr", "seed"):
            choices = sorted((_param_value(json.loads(v)) for v in vs), key=str)
            space[k] = CategoricalDistribution(choices)
    return space


def _param_value(v: Any) -> Any:
    return ",".join(map(str, v)) if isinstance(v, list) else v


def _enqueue_missing(study: optuna.Study, trials: list[PlannedTrial]) -> int:
    planned = {t.key for t in trials}
    stored = study.get_trials(deepcopy=False)
    for t in stored:
        if t.state == TrialState.WAITING and t.user_attrs.get("key") not in planned:
            tid = _optuna.trial_id(t)
            _optuna.set_trial_system_attr(study, tid, FAIL_REASON_ATTR, SUPERSEDED)
            _optuna.set_state(study, tid, TrialState.FAIL)
    # read before the superseded were failed: their keys count as live, but none is planned
    live = {t.user_attrs.get("key") for t in stored if t.state in _LIVE}
    space = _param_space(trials)
    # Optuna holds a param to one value space per study; where the plan's differs from what
    # stored trials used (a newer cnnlab added a value), new trials leave it out: it stays in
    # their config, only optuna-dashboard does not plot it
    for t in stored:
        for k, d in t.distributions.items():
            if k in space and space[k] != d:
                del space[k]
    added = 0
    for t in trials:
        if t.key in live:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params={k: _param_value(t.config[k]) for k in space},
                distributions=space,
                user_attrs={a: plain(getattr(t, a)) for a in PLAN_ATTRS},
            )
        )
        added += 1
    return added


# -- requeue -------------------------------------------------------------------------------


def requeue(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Enqueue a fresh copy of a failed trial unless its key is already live again. A trial
    of an older study loses its ``seed`` param in the copy (it stays a user attribute)."""
    key = trial.user_attrs.get("key")
    for other in study.get_trials(deepcopy=False):
        if other.number == trial.number:
            continue  # the failed trial itself (a listing may predate its failure)
        if other.user_attrs.get("key") == key and other.state in _LIVE:
            return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params={k: v for k, v in trial.params.items() if k != "seed"},
            distributions={k: d for k, d in trial.distributions.items() if k != "seed"},
            user_attrs={a: trial.user_attrs[a] for a in PLAN_ATTRS if a in trial.user_attrs},
            system_attrs={RETRY_OF_ATTR: trial.number},
        )
    )
    return True


def requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna calls this for a trial it failed as heartbeat-stale: queue its key again."""
    requeue(study, trial)


def fail_orphans(
    study: optuna.Study, trials: list[FrozenTrial], grace: float, check_heartbeats: bool = True
) -> int:
    """Fail and re-queue RUNNING trials whose worker is gone. Call under the study lock.

    Same machine: the worker's process no longer exists. Any machine: its heartbeat is older
    than the grace period (checked when ``check_heartbeats``; a query of its own, so callers
    do it every few seconds rather than before every claim)."""
    n = 0
    for t in abandoned(study, trials, grace, heartbeats=False):
        tid = _optuna.trial_id(t)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            # the reason first: a finished trial accepts no more attributes
            _optuna.set_trial_system_attr(study, tid, FAIL_REASON_ATTR, "worker process died")
            if _optuna.set_state(study, tid, TrialState.FAIL):
                requeue(study, t)
                n += 1
    if check_heartbeats:
        optuna.storages.fail_stale_trials(study)  # calls requeue_stale for each
    return n


# -- claim ---------------------------------------------------------------------------------


@dataclass
class Claim:
    trial_id: int
    number: int
    key: str
    kind: str
    label: str
    config: dict[str, Any]
    lr_choice: LrChoice | None  # the sweep's outcome, for a tuned trial
    error: str | None = None  # set when the trial cannot run (its sweep failed)


def _settled(trials: list[FrozenTrial]) -> tuple[dict[str, FrozenTrial], set[str]]:
    """(completed trial per key, keys that are finished one way or the other)."""
    done: dict[str, FrozenTrial] = {}
    live: set[str] = set()
    failed: set[str] = set()
    for t in trials:
        key = t.user_attrs.get("key")
        if t.state == TrialState.COMPLETE:
            done.setdefault(key, t)
        elif t.state in (TrialState.WAITING, TrialState.RUNNING):
            live.add(key)
        else:
            failed.add(key)
    return done, set(done) | (failed - live)


def claim_next(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    trials: list[FrozenTrial] | None = None,
) -> Claim | None:
    """Move the first ready WAITING trial to RUNNING for this process. Call under the lock.

    The worker's identity and first heartbeat are written before the state changes, so every
    RUNNING trial can be traced to its worker (and re-queued if that worker dies)."""
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    # sweeps first, as planned: a sweep trial re-queued after an interruption (or planned anew)
    # sits behind every main trial in number order, and the tuned trials wait for it
    waiting = sorted((t for t in trials if t.state == TrialState.WAITING),
                     key=lambda t: (t.user_attrs.get("kind") != "sweep", t.number))  # fmt: skip
    if not waiting:
        return None
    done, settled = _settled(trials)
    for t in waiting:
        deps = t.user_attrs.get("depends_on") or []
        if not all(d in settled for d in deps):
            continue  # its learning-rate sweep is still running
        tid = _optuna.trial_id(t)
        _optuna.set_trial_system_attr(study, tid, WORKER_ATTR, worker_identity())
        storage.record_heartbeat(tid)
        if not _optuna.set_state(study, tid, TrialState.RUNNING):
            continue
        config = dict(t.user_attrs["config"])
        claim = Claim(tid, t.number, t.user_attrs["key"], t.user_attrs["kind"],
                      t.user_attrs["label"], config, None)  # fmt: skip
        if t.user_attrs.get("tune_lr"):
            sweep = [done[d] for d in deps if d in done]
            if not sweep:
                claim.error = "every trial of its learning-rate sweep failed"
            else:
                # the rate each trial used: a bracketing round's is chosen when it runs
                used = (s.user_attrs.get("lr") or s.user_attrs["config"]["lr"] for s in sweep)
                claim.lr_choice = choose_lr(zip(used, (s.value for s in sweep), strict=True))
                config["lr"] = claim.lr_choice["chosen"]
        return claim
    return None


# -- finish --------------------------------------------------------------------------------


def finish(
    study: optuna.Study,
    claim: Claim,
    outcome: Mapping[str, Any] | None,
    error: str | None = None,
    requeue_after: bool = False,
) -> bool:
    """Record a trial's outcome (COMPLETE) or failure (FAIL, re-queued when asked).

    Returns False when the trial was no longer ours (failed as orphaned and re-queued by
    another worker meanwhile); its outcome is then discarded. Call under the lock.
    """
    tid = claim.trial_id
    if _optuna.get_trial(study, tid).state != TrialState.RUNNING:
        return False
    try:
        if outcome is None:
            _optuna.set_trial_system_attr(study, tid, FAIL_REASON_ATTR, error or "")
            _optuna.set_state(study, tid, TrialState.FAIL)
            if requeue_after:
                requeue(study, _optuna.get_trial(study, tid))
            return True
        attrs = {
            "metrics": outcome["metrics"],
            "history": outcome["history"],
            "lr": claim.config.get("lr"),
            "seconds": outcome["seconds"],
        }
        if claim.lr_choice is not None:
            attrs["lr_choice"] = claim.lr_choice
        if outcome.get("reused_from"):
            attrs["reused_from"] = outcome["reused_from"]
        _report_curve(study, tid, outcome["history"])
        for k, v in attrs.items():
            _optuna.set_trial_user_attr(study, tid, k, jsonable(v))
        _optuna.set_trial_system_attr(study, tid, PRED_ATTR, pack(outcome["test_pred"]))
        if LABELS_ATTR not in _optuna.study_system_attrs(study):
            _optuna.set_study_system_attr(study, LABELS_ATTR, pack(outcome["test_labels"]))
        value = float(outcome["history"][-1]["val_accuracy"])
        return _optuna.set_state(study, tid, TrialState.COMPLETE, [value])
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _report_curve(study: optuna.Study, tid: int, history: list[Mapping[str, Any]]) -> None:
    """Validation accuracy per epoch as the trial's intermediate values (step = epoch), the
    learning curve optuna-dashboard draws. Written at the end (the trainer runs in the worker
    and hands back its whole history), before COMPLETE: a finished trial takes no more."""
    for i, row in enumerate(history, start=1):
        value = row.get("val_accuracy")
        if value is not None:
            step = int(row.get("epoch", i))
            _optuna.set_trial_intermediate_value(study, tid, step, float(value))
