"""A study worker: claim a trial, train it, record it; until nothing is left to run.

Run as ``python -m cnnlab.study.worker '<json options>'`` by ``cnnlab study run`` (one process
per worker, so each gets its own TensorFlow thread pools), or call :func:`work` directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from cnnlab.errors import CnnlabError, DataUnavailable
from cnnlab.fmnist.config import TrainConfig
from cnnlab.runtime import configure_threads
from cnnlab.study import storage as st
from cnnlab.study.trial import DEFAULT_TRAINER, load_trainer
from cnnlab.study.tuning import probe_lr

IDLE_POLL_SECONDS = 1.0


@dataclass
class WorkerSummary:
    completed: int = 0
    failed: int = 0
    discarded: int = 0  # finished after another worker had re-queued the trial
    reused: int = 0  # copied from the reuse study, not trained


def work(
    url: str,
    name: str,
    trainer: str | None = None,
    data_dir: str | None = None,
    heartbeat: int | None = None,
    grace: int | None = None,
    log=print,
    wait_for_study: float = 0.0,
    digest: str | None = None,
    threads: int | None = None,
    reuse: tuple[str, str] | list[str] | None = None,
) -> WorkerSummary:
    """Run trials of study ``name`` until none is waiting or running anywhere.

    ``threads``: CPU threads for the trainer's framework (``runtime.configure_threads``), set
    once the trainer is loaded (before it trains).

    ``wait_for_study``: seconds to wait for the study to appear in the storage (and, with
    ``digest``, to hold that spec).

    ``reuse``: (storage URL, study name) of a study whose completed trials are copied, not
    trained again, where a claimed trial trains exactly what one of them did (``storage.reuse``).
    """
    storage = st.open_storage(url, heartbeat or st.HEARTBEAT_SECONDS, grace or st.GRACE_SECONDS)
    deadline = time.monotonic() + wait_for_study
    while True:  # `cnnlab study run` starts its workers while it is still creating the study
        try:
            study = st.load_study(storage, name)
            if digest is None or st.spec_digest(study) == digest:
                break
            # another spec under this name: the parent is about to refuse it; claim nothing
            error = CnnlabError(f"study {name!r} in this storage holds another spec")
        except CnnlabError as e:
            error = e
        if time.monotonic() > deadline:
            raise error
        time.sleep(0.2)
    source = st.ReuseSource(*reuse) if reuse else None
    if source is not None:
        source.check_labels(st.stored_test_labels(study))
    run = None  # the trainer is built (TensorFlow imported, data parsed) on the first claim
    environment = ""  # its name, once recorded with the trainer
    summary = WorkerSummary()
    grace = storage.grace_period or st.GRACE_SECONDS
    last_heartbeat_check = 0.0
    while True:
        with st.study_lock(url, name):
            trials = study.get_trials(deepcopy=False)
            check = time.monotonic() - last_heartbeat_check > grace / 2
            if st.fail_orphans(study, trials, grace, check_heartbeats=check) or check:
                trials = study.get_trials(deepcopy=False)
                last_heartbeat_check = time.monotonic()
            claim = st.claim_next(study, storage, trials)
        if claim is None:
            if not {t.state for t in trials} & {TrialState.WAITING, TrialState.RUNNING}:
                return summary
            time.sleep(IDLE_POLL_SECONDS)  # others are running; their orphans may come back
            continue
        if claim.error:
            with st.study_lock(url, name):
                st.finish(study, claim, None, claim.error)
            summary.failed += 1
            continue
        try:
            with st.Heartbeat(storage, claim.trial_id):
                if claim.kind == "sweep" and claim.lr_choice is not None:
                    # a bracketing round: its rate follows from the rounds before it
                    claim.config["lr"] = probe_lr(claim.lr_choice)
                copied = source.find(claim.config) if source is not None else None
                if copied is not None:
                    with st.study_lock(url, name):
                        env = st.adopt_environment(study, copied.environment,
                                                   copied.environment_info)  # fmt: skip
                        if env:
                            st.mark_environment(study, claim.trial_id, env)
                        recorded = st.finish(study, claim, copied.outcome)
                    summary.reused += recorded
                    continue
                if run is None:
                    run = load_trainer(trainer or DEFAULT_TRAINER, data_dir)
                    # its framework is imported now, its thread pools not yet started
                    configure_threads(threads, import_tensorflow_now=False)
                    with st.study_lock(url, name):
                        environment = st.record_environment(study, _environment())
                st.mark_environment(study, claim.trial_id, environment)
                start = time.perf_counter()
                outcome = run(TrainConfig.from_dict(claim.config))
                outcome["seconds"] = time.perf_counter() - start
                if source is not None:  # copies and trainings must score the same labels
                    source.check_labels(outcome["test_labels"])
                # Still beating while it waits for the lock and writes the outcome: under a
                # load of 12 on 2 cores that wait outlasted the tests' 3 s grace period, and
                # another worker failed the finished trial as stale and trained it again.
                with st.study_lock(url, name):
                    recorded = st.finish(study, claim, outcome)
        except KeyboardInterrupt:
            with st.study_lock(url, name):
                st.finish(study, claim, None, "interrupted", requeue_after=True)
            raise
        except Exception as e:  # noqa: BLE001 - one bad trial must not stop the study
            reason = f"{type(e).__name__}: {e}".splitlines()[0]
            log(f"trial {claim.label} failed: {reason}")
            if not isinstance(e, CnnlabError):
                traceback.print_exc()
            with st.study_lock(url, name):
                st.finish(study, claim, None, reason)
            summary.failed += 1
            if isinstance(e, DataUnavailable):
                raise  # no data: every further trial would fail the same way
            continue
        if recorded:
            summary.completed += 1
        else:
            summary.discarded += 1


def _environment() -> dict[str, Any]:
    from cnnlab.machine import environment_info

    info = environment_info()
    info["threads"] = os.environ.get("TF_NUM_INTRAOP_THREADS", "all")
    keras = sys.modules.get("keras")
    info["backend"] = keras.backend.backend() if keras is not None else "none (test trainer)"
    return info


def _die_with_parent(parent: int | None) -> None:
    """A worker must not outlive ``cnnlab study run`` (Linux): a killed run leaves no workers
    behind, and their trials are re-queued when the run is started again."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    options: dict[str, Any] = json.loads((argv or sys.argv[1:])[0])
    _die_with_parent(options.pop("parent", None))
    # The parent stops workers with SIGINT (even when started in the background, where the
    # shell ignores SIGINT); SIGTERM is handled alike: the running trial goes back to the queue.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    threads = int(options.pop("threads", None) or 0) or None
    # the environment's pool sizes before any framework is imported; TensorFlow's own setters
    # once the trainer has imported it (``work``)
    configure_threads(threads, import_tensorflow_now=False)
    try:
        work(log=lambda m: print(m, file=sys.stderr, flush=True), threads=threads, **options)
    except CnnlabError as e:
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is recorded in the storage by now. Skip the interpreter's teardown, which
    # with TensorFlow loaded took 2-3 s per worker at the end of every study.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
