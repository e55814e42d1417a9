"""Writing what a command produces: checked before the work, all or nothing, a full disk as
one line.

``run_directory`` (``runs.py``) already builds a run under a temporary name; ``staged`` does
the same for loose files (``predict``'s CSV and Grad-CAM overlays), and ``disk_errors``
turns a full disk or quota into a ``CnnlabError`` once the partial output is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cnnlab.errors import CnnlabError, DiskFull
from cnnlab.runs import disk_full


@contextlib.contextmanager
def disk_errors(out: str | os.PathLike) -> Iterator[None]:
    """Re-raise a full disk (``runs.disk_full``: no space, quota, file too large; also when
    wrapped) as ``DiskFull``, and a read-only file system as a ``CnnlabError``: one line each.

    Callers clean up inside this block (``run_directory``, ``staged``), so by the time the
    error is raised, nothing of the failed output is left.
    """
    try:
        yield
    except OSError as e:
        full = disk_full(e)
        if full is None and e.errno != errno.EROFS:
            raise
        cause = full or e
        reason = cause.strerror or os.strerror(cause.errno or 0)
        message = f"cannot write {out}: {reason}; nothing was written there"
        raise (CnnlabError(message) if full is None else DiskFull(message)) from None


@contextlib.contextmanager
def staged(out: str | os.PathLike) -> Iterator[Callable[[str | os.PathLike], Path]]:
    """Write several files all or none: ``stage(path)`` names a temporary sibling of ``path``
    for any writer; the siblings replace their targets only when the block completes.

    On any error the temporaries, and the directories made for them, are removed: a full
    disk halfway through leaves neither half of the files nor an empty output folder.
    """
    pending: list[tuple[Path, Path]] = []
    made: list[Path] = []

    def stage(path: str | os.PathLike) -> Path:
        path = Path(path)
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        made.extend(missing)  # deepest first
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".staged", dir=path.parent)
        os.close(fd)
        pending.append((Path(tmp), path))
        return Path(tmp)

    try:
        with disk_errors(out):
            yield stage
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if still empty
        raise
    for tmp, path in pending:
        os.replace(tmp, path)
