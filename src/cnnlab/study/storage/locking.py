"""One lock per study across processes and machines: every enqueue, claim and state change
happens under it.

SQLite reads outside a transaction, so Optuna's own check-then-set of a trial's state is not
atomic there; a file lock next to the database file makes it so (``files.held_lock``: it never
follows a symbolic link, so a planted link cannot make a worker write into its target).
PostgreSQL and MySQL get an advisory lock held on its own connection (a lock file would not
reach other machines).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy

from cnnlab.errors import CnnlabError
from cnnlab.files import held_lock
from cnnlab.study.defaults import DEFAULT_STORAGE

LOCK_TIMEOUT_SECONDS = 120

_LOCK_ENGINES: dict[str, sqlalchemy.Engine] = {}


@contextlib.contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Serialise enqueue/claim/finish of study ``name`` in the storage at ``url``."""
    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # one lock per file, whatever the study: SQLite allows one writer at a time anyway
        with held_lock(Path(f"{sqlite_file(parsed)}.lock"), LOCK_TIMEOUT_SECONDS, "study lock"):
            yield
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
            conn.execute(
                text("SELECT GET_LOCK(:k, :t)"), {"k": str(key), "t": LOCK_TIMEOUT_SECONDS}
            )
            release = text("SELECT RELEASE_LOCK(:k)")
        try:
            yield
        finally:
            conn.execute(release, {"k": key if backend == "postgresql" else str(key)})
            conn.commit()


def sqlite_file(url: sqlalchemy.URL) -> str:
    """The database file of a ``sqlite://`` URL; an in-memory database is refused, since each
    process would see its own, and study workers are separate processes."""
    db = url.database or ""
    if not db or ":memory:" in db or url.query.get("mode") == "memory":
        raise CnnlabError(
            "--storage names an in-memory SQLite database, which each process sees alone, "
            f"and study workers are separate processes; give a file, e.g. {DEFAULT_STORAGE}"
        )
    return db
