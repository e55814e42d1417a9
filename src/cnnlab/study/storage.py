"""Study storage on Optuna: every planned trial is an Optuna trial, and each runs exactly once.

Why Optuna: its RDB storage hides SQLite and PostgreSQL behind one URL, keeps trials, their
attributes and worker heartbeats, and stays readable by ``optuna-dashboard``. The study engine
does not sample anything; it enqueues a fixed design and claims trials from the queue.

Exactly once, across processes and machines:
- each planned trial has a deterministic key (see ``spec.py``); a key is enqueued only when it
  has no waiting, running or complete trial, and every enqueue, claim and state change happens
  under a per-study lock (a file lock next to a SQLite file, an advisory lock on PostgreSQL),
  so two workers starting at once cannot enqueue a key twice;
- claiming is WAITING -> RUNNING through Optuna's storage, under the same lock (SQLite reads
  outside a transaction, so Optuna's own check-then-set is not atomic there);
- a worker that dies leaves a RUNNING trial behind. It is failed and re-enqueued when its
  process is gone (same machine: checked immediately) or its heartbeat is older than the grace
  period (any machine). A trial can only be completed while RUNNING, so a late worker cannot
  complete a trial that was re-queued.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import PlannedTrial, StudySpec, spec_from_source

HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 30
LOCK_TIMEOUT_SECONDS = 120
DEFAULT_STORAGE = "sqlite:///studies.db"

_SPEC_ATTR = "cnnlab_spec"
_DIGEST_ATTR = "cnnlab_spec_digest"
_LABELS_ATTR = "cnnlab_test_labels"
_PRED_ATTR = "cnnlab_test_pred"
_WORKER_ATTR = "cnnlab_worker"
_PLAN_ATTRS = ("key", "kind", "label", "seed", "config", "tune_lr", "depends_on")


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and the retry callback are "experimental" in Optuna; their warnings are noise here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")


# -- storage and lock ----------------------------------------------------------------------


def open_storage(url: str, heartbeat: int = HEARTBEAT_SECONDS, grace: int = GRACE_SECONDS) -> Any:
    """An Optuna RDB storage with heartbeats; a bad URL or unreachable server is one line."""
    _quiet_optuna()
    import optuna
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise CnnlabError(f"invalid --storage URL {url!r} (e.g. sqlite:///studies.db)") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            if not Path(db).parent.resolve().is_dir():
                raise CnnlabError(f"--storage: folder {Path(db).parent} does not exist")
            if Path(db).exists() and not _is_sqlite_file(Path(db)):
                raise CnnlabError(f"--storage: {db} exists and is not a SQLite database")
        kwargs["connect_args"] = {"timeout": 60}  # concurrent workers wait for each other
    try:
        # Optuna creates its tables on first use; two processes doing so at once collide
        with study_lock(url, "storage"):
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat,
                grace_period=grace,
                heartbeat_stale_trial_callback=_requeue_callback,
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"cannot open study storage {_safe_url(url)}: {first}") from None


def _is_sqlite_file(path: Path) -> bool:
    if path.stat().st_size == 0:
        return True
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _safe_url(url: str) -> str:
    import sqlalchemy

    with contextlib.suppress(Exception):
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    return "<storage>"


_LOCK_ENGINES: dict[str, Any] = {}


@contextlib.contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Serialise enqueue/claim/finish of one study across processes and machines."""
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":  # private to this process
            yield
            return
        import filelock

        try:
            with filelock.FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_SECONDS):
                yield
        except filelock.Timeout:
            raise CnnlabError(f"timed out waiting for the study lock {db}.lock") from None
        return
    if backend not in ("postgresql", "mysql", "mariadb"):
        yield  # no cross-process lock known for this database: safe for one worker only
        return
    engine = _LOCK_ENGINES.get(url)
    if engine is None:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        _LOCK_ENGINES[url] = engine
    key = int.from_bytes(zlib.crc32(f"cnnlab:{name}".encode()).to_bytes(4, "big"), "big")
    text = sqlalchemy.text
    with engine.connect() as conn:
        if backend == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            release = text("SELECT pg_advisory_unlock(:k)")
        else:
            conn.execute(text("SELECT GET_LOCK(:k, :t)"), {"k": str(key), "t": 120})
            release = text("SELECT RELEASE_LOCK(:k)")
        try:
            yield
        finally:
            conn.execute(release, {"k": key if backend == "postgresql" else str(key)})
            conn.commit()


# -- studies -------------------------------------------------------------------------------


def load_study(storage: Any, name: str) -> Any:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        hint = f"; studies here: {', '.join(names)}" if names else "; the storage holds none"
        raise CnnlabError(f"no study named {name!r}{hint}") from None


def study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def stored_spec(study: Any) -> StudySpec:
    source = study.user_attrs.get(_SPEC_ATTR)
    if source is None:
        raise CnnlabError(f"study {study.study_name!r} was not created by cnnlab study run")
    return spec_from_source(source)


def prepare_study(
    url: str, storage: Any, name: str, spec: StudySpec, origin: dict[str, Any] | None = None
) -> tuple[Any, int]:
    """Create or load the study and enqueue every planned trial not yet queued, run or done.

    Returns the study and how many trials were enqueued. A study that exists under ``name``
    with a different spec is refused rather than mixed.
    """
    import optuna

    trials, _ = spec.plan()
    with study_lock(url, name):
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True
        )
        digest = study.user_attrs.get(_DIGEST_ATTR)
        if digest is None:
            study.set_user_attr(_SPEC_ATTR, spec.source)
            study.set_user_attr(_DIGEST_ATTR, spec.digest)
            study.set_metric_names(["val_accuracy"])
            study.set_user_attr("cnnlab_origin", origin or {})
        elif digest != spec.digest:
            raise CnnlabError(
                f"study {name!r} already exists in this storage with a different spec; "
                "use another --name (or the same spec to resume)"
            )
        added = _enqueue_missing(study, trials)
    return study, added


def spec_digest(study: Any) -> str | None:
    """The digest of the spec a study was created with (None while it is being created)."""
    return study.user_attrs.get(_DIGEST_ATTR)


def _param_space(trials: list[PlannedTrial]) -> dict[str, Any]:
    """Config fields that vary across the study become Optuna params, so optuna-dashboard can
    plot accuracy against them; the learning rate stays an attribute (a tuned one is unknown
    until its sweep has run)."""
    from optuna.distributions import CategoricalDistribution

    values: dict[str, set] = {}
    for t in trials:
        for k, v in t.config.items():
            values.setdefault(k, set()).add(json.dumps(v))
    space = {}
    for k, vs in values.items():
        if len(vs) > 1 and k not in ("lr", "seed"):
            choices = sorted((_param_value(json.loads(v)) for v in vs), key=str)
            space[k] = CategoricalDistribution(choices)
    return space


def _param_value(v: Any) -> Any:
    return ",".join(map(str, v)) if isinstance(v, list) else v


def _enqueue_missing(study: Any, trials: list[PlannedTrial]) -> int:
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState

    live = {
        t.user_attrs.get("key")
        for t in study.get_trials(
            deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
        )
    }
    space = _param_space(trials)
    seeds = [t.seed for t in trials]
    added = 0
    for t in trials:
        if t.key in live:
            continue
        params = {k: _param_value(t.config[k]) for k in space}
        dists = dict(space)
        params["seed"] = t.seed
        dists["seed"] = IntDistribution(min(seeds), max(seeds))
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=params,
                distributions=dists,
                user_attrs={a: _plain(getattr(t, a)) for a in _PLAN_ATTRS},
            )
        )
        added += 1
    return added


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _requeue_callback(study: Any, trial: Any) -> None:
    """Optuna calls this for a trial failed as heartbeat-stale: queue its key again."""
    requeue(study, trial)


def requeue(study: Any, trial: Any) -> bool:
    """Enqueue a fresh copy of a failed trial unless its key is already live again."""
    import optuna
    from optuna.trial import TrialState

    key = trial.user_attrs.get("key")
    for other in study.get_trials(deepcopy=False):
        if other.number == trial.number:
            continue  # the failed trial itself (a listing may predate its failure)
        if other.user_attrs.get("key") == key and other.state in (
            TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE,
        ):  # fmt: skip
            return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={a: trial.user_attrs[a] for a in _PLAN_ATTRS if a in trial.user_attrs},
            system_attrs={"cnnlab_retry_of": trial.number},
        )
    )
    return True


# -- workers -------------------------------------------------------------------------------


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


def _is_local_orphan(worker: Mapping[str, Any] | None) -> bool:
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


def fail_orphans(study: Any, trials: list[Any], grace: float, check_heartbeats: bool = True) -> int:
    """Fail and re-queue RUNNING trials whose worker is gone. Call under the study lock.

    Same machine: the worker's process no longer exists. Any machine: its heartbeat is older
    than the grace period (checked when ``check_heartbeats``; a query of its own, so callers
    do it every few seconds rather than before every claim)."""
    import datetime

    import optuna
    from optuna.trial import TrialState

    n = 0
    now = datetime.datetime.now()
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        worker = t.system_attrs.get(_WORKER_ATTR)
        # no worker recorded (not claimed by cnnlab): judged by its age alone
        ageless = worker is None and t.datetime_start is not None
        too_old = ageless and (now - t.datetime_start).total_seconds() > grace
        if not (_is_local_orphan(worker) or too_old):
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            # the reason first: a finished trial accepts no more attributes
            study._storage.set_trial_system_attr(
                t._trial_id, "cnnlab_fail_reason", "worker process died"
            )
            if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                requeue(study, t)
                n += 1
    if check_heartbeats:
        optuna.storages.fail_stale_trials(study)  # calls _requeue_callback for each
    return n


@dataclass
class Claim:
    trial_id: int
    number: int
    key: str
    kind: str
    label: str
    config: dict[str, Any]
    lr_choice: dict[str, Any] | None  # the sweep's outcome, for a tuned trial
    error: str | None = None  # set when the trial cannot run (its sweep failed)


def _settled(trials: list[Any]) -> tuple[dict[str, Any], set[str]]:
    """(completed trial per key, keys that are finished one way or the other)."""
    from optuna.trial import TrialState

    done: dict[str, Any] = {}
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


def choose_lr(sweep: list[Any]) -> dict[str, Any]:
    """The sweep's learning rate with the best mean final validation accuracy."""
    by_lr: dict[float, list[float]] = {}
    for t in sweep:
        by_lr.setdefault(float(t.user_attrs["config"]["lr"]), []).append(float(t.value))
    candidates = [
        {"lr": lr, "val_accuracy": float(np.mean(v)), "n": len(v)}
        for lr, v in sorted(by_lr.items())
    ]
    best = max(candidates, key=lambda c: (c["val_accuracy"], -c["lr"]))
    return {"chosen": best["lr"], "candidates": candidates}


def claim_next(study: Any, storage: Any, trials: list[Any] | None = None) -> Claim | None:
    """Move the first ready WAITING trial to RUNNING for this process. Call under the lock.

    The worker's identity and first heartbeat are written before the state changes, so every
    RUNNING trial can be traced to its worker (and re-queued if that worker dies)."""
    from optuna.trial import TrialState

    if trials is None:
        trials = study.get_trials(deepcopy=False)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    if not waiting:
        return None
    done, settled = _settled(trials)
    for t in waiting:
        deps = t.user_attrs.get("depends_on") or []
        if not all(d in settled for d in deps):
            continue  # its learning-rate sweep is still running
        study._storage.set_trial_system_attr(t._trial_id, _WORKER_ATTR, worker_identity())
        storage.record_heartbeat(t._trial_id)
        if not study._storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
            continue
        config = dict(t.user_attrs["config"])
        claim = Claim(t._trial_id, t.number, t.user_attrs["key"], t.user_attrs["kind"],
                      t.user_attrs["label"], config, None)  # fmt: skip
        if t.user_attrs.get("tune_lr"):
            sweep = [done[d] for d in deps if d in done]
            if not sweep:
                claim.error = "every trial of its learning-rate sweep failed"
            else:
                claim.lr_choice = choose_lr(sweep)
                config["lr"] = claim.lr_choice["chosen"]
        return claim
    return None


class Heartbeat:
    """Records the trial's heartbeat every interval in a background thread."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        interval = self._storage.get_heartbeat_interval() or HEARTBEAT_SECONDS
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):  # a missed beat is tolerated by the grace period
                self._storage.record_heartbeat(self._trial_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def finish(
    study: Any,
    claim: Claim,
    outcome: Mapping[str, Any] | None,
    error: str | None = None,
    requeue_after: bool = False,
) -> bool:
    """Record a trial's outcome (COMPLETE) or failure (FAIL, re-queued when asked).

    Returns False when the trial was no longer ours (failed as orphaned and re-queued by
    another worker meanwhile); its outcome is then discarded. Call under the lock.
    """
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    trial = storage.get_trial(claim.trial_id)
    if trial.state != TrialState.RUNNING:
        return False
    try:
        if outcome is None:
            storage.set_trial_system_attr(claim.trial_id, "cnnlab_fail_reason", error or "")
            storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)
            if requeue_after:
                requeue(study, storage.get_trial(claim.trial_id))
            return True
        attrs = {
            "metrics": outcome["metrics"],
            "history": outcome["history"],
            "lr": claim.config.get("lr"),
            "seconds": outcome["seconds"],
        }
        if claim.lr_choice is not None:
            attrs["lr_choice"] = claim.lr_choice
        for k, v in attrs.items():
            storage.set_trial_user_attr(claim.trial_id, k, _jsonable(v))
        storage.set_trial_system_attr(claim.trial_id, _PRED_ATTR, pack(outcome["test_pred"]))
        if _LABELS_ATTR not in storage.get_study_system_attrs(study._study_id):
            storage.set_study_system_attr(
                study._study_id, _LABELS_ATTR, pack(outcome["test_labels"])
            )
        value = float(outcome["history"][-1]["val_accuracy"])
        return storage.set_trial_state_values(claim.trial_id, TrialState.COMPLETE, [value])
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _jsonable(v: Any) -> Any:
    return json.loads(
        json.dumps(v, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


def record_environment(study: Any, info: dict[str, Any]) -> None:
    """Machine and versions of a worker host, once per host, for the report."""
    key = f"cnnlab_env:{socket.gethostname()}"
    attrs = study._storage.get_study_system_attrs(study._study_id)
    if key not in attrs:
        study._storage.set_study_system_attr(study._study_id, key, _jsonable(info))


def worker_environments(study: Any) -> dict[str, Any]:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return {k.split(":", 1)[1]: v for k, v in sorted(attrs.items()) if k.startswith("cnnlab_env:")}


def pack(labels: np.ndarray) -> str:
    """10k class indices as compact text: uint8, zlib, base64 (about 4 KB instead of 30)."""
    data = np.asarray(labels, dtype=np.uint8).tobytes()
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8).astype(np.int64)


# -- reading results -----------------------------------------------------------------------


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
    lr_choice: dict[str, Any] | None


def completed_records(study: Any) -> dict[str, TrialRecord]:
    """The completed trial of each key (the first, should a misconfigured setup allow two)."""
    from optuna.trial import TrialState

    out: dict[str, TrialRecord] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        if a.get("key") in out or _PRED_ATTR not in t.system_attrs:
            continue
        out[a["key"]] = TrialRecord(
            key=a["key"], kind=a["kind"], label=a["label"], seed=int(a["seed"]),
            number=t.number, config=a["config"], lr=a.get("lr"), metrics=a["metrics"],
            history=a["history"], seconds=float(a["seconds"]), value=float(t.value),
            test_pred=unpack(t.system_attrs[_PRED_ATTR]), lr_choice=a.get("lr_choice"),
        )  # fmt: skip
    return out


def test_labels(study: Any) -> np.ndarray | None:
    text = study._storage.get_study_system_attrs(study._study_id).get(_LABELS_ATTR)
    return None if text is None else unpack(text)


test_labels.__test__ = False  # not a pytest test


@dataclass
class Progress:
    total: int  # planned keys
    complete: int
    running: int
    waiting: int
    failed: int  # keys whose latest attempt failed and that are not queued again
    attempts_failed: int  # failed attempts, including re-queued ones
    mean_seconds: float | None  # per completed trial
    eta_seconds: float | None
    running_labels: list[str]


def progress(trials: list[Any], planned: int) -> Progress:
    from optuna.trial import TrialState

    state_of: dict[str, set] = {}
    for t in trials:
        state_of.setdefault(t.user_attrs.get("key"), set()).add(t.state)
    complete = sum(TrialState.COMPLETE in s for s in state_of.values())
    running = [t for t in trials if t.state == TrialState.RUNNING]
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    live = {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}
    failed = sum(TrialState.FAIL in s and not s & live for s in state_of.values())
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state == TrialState.COMPLETE and t.datetime_start and t.datetime_complete
    ]
    mean = float(np.mean(durations)) if durations else None
    remaining = max(planned - complete - failed, 0)
    eta = None
    if mean is not None:
        eta = mean * remaining / max(len(running), 1)
    return Progress(
        total=planned, complete=complete, running=len(running), waiting=waiting, failed=failed,
        attempts_failed=sum(t.state == TrialState.FAIL for t in trials), mean_seconds=mean,
        eta_seconds=eta, running_labels=[t.user_attrs.get("label", "?") for t in running],
    )  # fmt: skip
