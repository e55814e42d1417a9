"""Opening a study storage from a URL, and the studies in it.

Why Optuna: its RDB storage hides SQLite and PostgreSQL behind one URL, keeps trials, their
attributes and worker heartbeats, and stays readable by ``optuna-dashboard``. Every mistake in
the URL is one line naming it, found before anything is created on disk.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy

from cnnlab.errors import CnnlabError
from cnnlab.study.defaults import DEFAULT_STORAGE
from cnnlab.study.storage.liveness import GRACE_SECONDS, HEARTBEAT_SECONDS
from cnnlab.study.storage.locking import sqlite_file, study_lock
from cnnlab.study.storage.queue import requeue_stale


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and the retry callback are "experimental" in Optuna; their warnings are noise here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")


def check_url(url: str, must_exist: bool = False) -> sqlalchemy.URL:
    """The parsed URL, or one line saying what is wrong with it. Creates nothing.

    ``must_exist``: a SQLite file that does not exist yet holds no study (for commands that only
    read, which must not leave an empty database behind)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise CnnlabError(f"invalid --storage URL {url!r} (e.g. {DEFAULT_STORAGE})") from None
    if parsed.get_backend_name() != "sqlite":
        return parsed
    db = Path(sqlite_file(parsed))
    if not db.parent.resolve().is_dir():
        raise CnnlabError(f"--storage: folder {db.parent} does not exist")
    if db.is_dir():
        raise CnnlabError(
            f"--storage: {db} is a folder, not a database file (e.g. sqlite:///{db}/studies.db)"
        )
    if not db.exists():
        if must_exist:
            raise CnnlabError(f"no study in --storage {url}: the file {db} does not exist")
    elif not _is_sqlite_file(db):
        raise CnnlabError(f"--storage: {db} exists and is not a SQLite database")
    elif must_exist and db.stat().st_size == 0:  # opening it would write Optuna's tables
        raise CnnlabError(f"no study in --storage {url}: the file {db} is empty")
    return parsed


def open_storage(
    url: str,
    heartbeat: int = HEARTBEAT_SECONDS,
    grace: int = GRACE_SECONDS,
    must_exist: bool = False,
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats; a bad URL or unreachable server is one line.

    A trial whose heartbeat stops for ``grace`` seconds is failed and queued again."""
    quiet_optuna()
    parsed = check_url(url, must_exist)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 60}  # concurrent workers wait for each other
    try:
        # Optuna creates its tables on first use; two processes doing so at once collide
        with study_lock(url, "storage"):
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat,
                grace_period=grace,
                heartbeat_stale_trial_callback=requeue_stale,
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"cannot open study storage {safe_url(url)}: {first}") from None


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other databases or a bad URL): an
    input no output of the same command may land on."""
    with contextlib.suppress(sqlalchemy.exc.ArgumentError, CnnlabError):
        parsed = sqlalchemy.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return Path(sqlite_file(parsed))
    return None


def _is_sqlite_file(path: Path) -> bool:
    try:
        if path.stat().st_size == 0:
            return True
        with path.open("rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError as e:
        raise CnnlabError(f"--storage: cannot read {path}: {e.strerror}") from None


def safe_url(url: str) -> str:
    """The URL without its password, for messages and reports."""
    with contextlib.suppress(Exception):
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    return "<storage>"


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        hint = f"; studies here: {', '.join(names)}" if names else "; the storage holds none"
        raise CnnlabError(f"no study named {name!r}{hint}") from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]
