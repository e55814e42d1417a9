"""The one place where cnnlab reaches past Optuna's public API.

Why at all: Optuna's ``Study`` has no public way for an outside worker to claim a given WAITING
trial under cnnlab's own lock (``study.ask()`` picks through Optuna's loop), to change a trial's
state, attributes or intermediate values after the fact, or to list heartbeat-stale trials
without failing them. The storage under a study does all of this; reaching it takes
``study._storage``, ``study._study_id``, ``FrozenTrial._trial_id`` and ``_get_stale_trial_ids``,
and the storage methods themselves are documented as "not supposed to be directly accessed by
library users".

``tests/study/test_optuna_adapter.py`` pins every behaviour relied on here, so an Optuna release
that changes one fails that test first; ``pyproject.toml`` bounds optuna to the major version
tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna import Study
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState


def _storage(study: Study) -> BaseStorage:
    return study._storage  # a _CachedStorage around the RDBStorage the study was loaded from


def trial_id(trial: FrozenTrial) -> int:
    """The storage's id of a trial (its ``number`` counts within the study only)."""
    return trial._trial_id


def get_trial(study: Study, trial_id: int) -> FrozenTrial:
    """The trial as stored now (not as cached by an earlier ``get_trials``)."""
    return _storage(study).get_trial(trial_id)


def set_state(
    study: Study, trial_id: int, state: TrialState, values: Sequence[float] | None = None
) -> bool:
    """Set a trial's state (and values). RUNNING is taken only from WAITING: False means another
    worker claimed the trial first. A finished trial raises ``UpdateFinishedTrialError``."""
    return _storage(study).set_trial_state_values(trial_id, state, values)


def set_trial_system_attr(study: Study, trial_id: int, key: str, value: Any) -> None:
    """Raises ``UpdateFinishedTrialError`` once the trial is finished."""
    _storage(study).set_trial_system_attr(trial_id, key, value)


def set_trial_user_attr(study: Study, trial_id: int, key: str, value: Any) -> None:
    """Raises ``UpdateFinishedTrialError`` once the trial is finished."""
    _storage(study).set_trial_user_attr(trial_id, key, value)


def set_trial_intermediate_value(study: Study, trial_id: int, step: int, value: float) -> None:
    """What ``Trial.report`` does for the running trial of ``study.ask()``, for a trial claimed
    by id. Raises ``UpdateFinishedTrialError`` once the trial is finished."""
    _storage(study).set_trial_intermediate_value(trial_id, step, value)


def study_system_attrs(study: Study) -> dict[str, Any]:
    return _storage(study).get_study_system_attrs(study._study_id)


def set_study_system_attr(study: Study, key: str, value: Any) -> None:
    _storage(study).set_study_system_attr(study._study_id, key, value)


def stale_trial_ids(study: Study) -> list[int]:
    """Ids of RUNNING trials whose last heartbeat is older than the storage's grace period,
    read without failing them (``optuna.storages.fail_stale_trials`` fails them). A trial that
    never beat is not listed. Empty when the storage keeps no heartbeats."""
    storage = _storage(study)
    if not storage.get_heartbeat_interval():
        return []
    return list(storage._get_stale_trial_ids(study._study_id))
