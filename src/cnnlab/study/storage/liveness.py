"""Is a trial's worker still alive? Every claim records who claimed it; this module answers.

Same machine: the worker's process is looked up in ``/proc`` (gone, or its pid reused by a
process that started at another time), so a killed worker is known at once. Any machine: the
worker records a heartbeat every few seconds, and one older than the grace period means gone.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.study.storage import _optuna
from cnnlab.study.storage.format import WORKER_ATTR

HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 30  # six missed beats: a loaded machine may delay a few


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
    return socket.gethostname()


def _process_start(pid: int) -> str | None:
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks
    return None


def worker_identity() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "machine": _machine_id(),
        "pid": pid,
        "start": _process_start(pid),
        "parent": os.getppid(),  # the `cnnlab study run` that started it
    }


def is_local_orphan(worker: Mapping[str, Any] | None) -> bool:
    """True when the trial's worker ran on this machine and that process no longer exists."""
    if not worker or worker.get("machine") != _machine_id():
        return False
    pid = int(worker.get("pid", -1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    start = worker.get("start")
    return start is not None and _process_start(pid) not in (None, start)  # pid reused


def abandoned(
    study: optuna.Study, trials: list[FrozenTrial], grace: float, heartbeats: bool = True
) -> list[FrozenTrial]:
    """The RUNNING trials whose worker is gone: its process no longer exists (same machine),
    or no worker was recorded and the trial started over ``grace`` seconds ago, or (with
    ``heartbeats``: one query more) its heartbeat is older than the storage's grace period."""
    stale = set(_optuna.stale_trial_ids(study)) if heartbeats else set()
    now = datetime.datetime.now()
    gone = []
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        worker = t.system_attrs.get(WORKER_ATTR)
        # no worker recorded (not claimed by cnnlab): judged by its age alone
        ageless = worker is None and t.datetime_start is not None
        too_old = ageless and (now - t.datetime_start).total_seconds() > grace
        if too_old or is_local_orphan(worker) or _optuna.trial_id(t) in stale:
            gone.append(t)
    return gone


class Heartbeat:
    """Records the trial's heartbeat every interval in a background thread."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        self._rdb, self._trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        interval = self._rdb.get_heartbeat_interval() or HEARTBEAT_SECONDS
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):  # a missed beat is tolerated by the grace period
                self._rdb.record_heartbeat(self._trial_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
