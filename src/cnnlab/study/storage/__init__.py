"""Study storage on Optuna: every planned trial is an Optuna trial, and each runs exactly once.

The study engine does not sample anything; it enqueues a fixed design and claims trials from
the queue. One file per concern, as in Optuna's own ``storages`` package:

- ``connection``: a storage from a ``--storage`` URL (checked first), the studies in it;
- ``locking``: the per-study lock every queue step runs under, across processes and machines;
- ``queue``: the protocol (enqueue, claim, requeue, finish);
- ``liveness``: whether a trial's worker is still alive (``/proc``, heartbeats);
- ``results``: reading a study back (spec, completed trials, progress);
- ``reuse``: trials another study already trained, copied instead of trained again;
- ``format``: the attribute names and encodings that make up the storage format;
- ``_optuna``: the only module that uses Optuna's private API.
"""

from __future__ import annotations

from cnnlab.study.storage.connection import (
    check_url,
    load_study,
    open_storage,
    quiet_optuna,
    safe_url,
    sqlite_path,
    study_names,
)
from cnnlab.study.storage.format import pack, unpack
from cnnlab.study.storage.liveness import (
    GRACE_SECONDS,
    HEARTBEAT_SECONDS,
    Heartbeat,
    abandoned,
    worker_identity,
)
from cnnlab.study.storage.locking import LOCK_TIMEOUT_SECONDS, study_lock
from cnnlab.study.storage.queue import (
    Claim,
    claim_next,
    fail_orphans,
    finish,
    prepare_study,
    requeue,
)
from cnnlab.study.storage.results import (
    Progress,
    TrialRecord,
    adopt_environment,
    completed_records,
    mark_environment,
    progress,
    record_environment,
    spec_digest,
    stored_spec,
    stored_test_labels,
    study_progress,
    worker_environments,
)
from cnnlab.study.storage.reuse import ReuseSource

__all__ = [
    "GRACE_SECONDS", "HEARTBEAT_SECONDS", "LOCK_TIMEOUT_SECONDS", "Claim", "Heartbeat",
    "Progress", "ReuseSource", "TrialRecord", "abandoned", "adopt_environment", "check_url",
    "claim_next", "completed_records", "fail_orphans", "finish", "load_study",
    "mark_environment", "open_storage", "pack", "prepare_study", "progress", "quiet_optuna",
    "record_environment", "requeue", "safe_url", "spec_digest", "sqlite_path", "stored_spec",
    "stored_test_labels", "study_lock", "study_names", "study_progress", "unpack",
    "worker_environments", "worker_identity",
]  # fmt: skip
