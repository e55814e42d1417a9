"""Writing files safely: the one place every command's outputs go through.

- **One rule for every output path** (:func:`check_output`), checked before any work: a file
  that exists is replaced only with ``--overwrite``; an output never lands on, above or inside
  anything the same command reads (paths resolved, symbolic links followed); it never resolves
  to or above a run directory the command did not create; its folder must be writable.
- **All or nothing**: a file is written under a temporary sibling name, fsync'd and renamed
  into place (:func:`atomic_write_bytes`); several files at once are staged and published
  together (:func:`staged`). Without ``overwrite`` the rename is a hard link, which fails
  rather than replace a file that appeared during the work.
- **The umask decides permissions**: files are created 0666 & ~umask, like ``open()``;
  ``tempfile.mkstemp`` would make every output 0600.
- **One line per failure**: a full disk or quota is :class:`DiskFull`, a read-only or
  forbidden folder a :class:`CnnlabError` (:func:`output_errors`).
- **Lock files** never follow a symbolic link and never open anything but a plain file of one
  link (:func:`open_lock`): a planted link cannot make cnnlab write into its target.

Run directories (claimed, built under a temporary name, published when complete) are
:mod:`cnnlab.runs`, on top of this module.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, DiskFull

# the disk, not the input, is at fault: no space, no quota, a file too large for it
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# the folder cannot be written: permissions, a read-only file system
_FORBIDDEN = (errno.EACCES, errno.EPERM, errno.EROFS)
Path_ = str | os.PathLike
# what a command reads: {label: path}, or paths and (label, path) pairs
Inputs = Mapping[str, Path_ | None] | Sequence[Path_ | tuple[str, Path_]]


def disk_full(error: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT/EFBIG error behind ``error`` (libraries often wrap or chain it), if
    any: the one definition of a full disk, for every writer of both pipelines."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_error(e: BaseException, out: Path_) -> CnnlabError | None:
    """``e`` as one user error about ``out`` (a full disk, a forbidden or read-only folder),
    or None when it is neither (a bug, which keeps its traceback)."""
    if full := disk_full(e):
        reason = full.strerror or os.strerror(full.errno or 0)
        return DiskFull(f"cannot write {out}: {reason}; nothing was written there")
    if isinstance(e, OSError) and e.errno in _FORBIDDEN:
        reason = e.strerror or os.strerror(e.errno or 0)
        return CnnlabError(f"cannot write {out}: {reason}; nothing was written there")
    return None


@contextlib.contextmanager
def output_errors(out: Path_) -> Iterator[None]:
    """Re-raise a full disk or a forbidden folder as one user error (:func:`write_error`).
    Callers clean up inside this block, so nothing of the failed output is left."""
    try:
        yield
    except OSError as e:
        error = write_error(e, out)
        if error is None:
            raise
        raise error from None


# -- the rule for every output path -------------------------------------------------------------


def _real(path: Path_) -> Path:
    return Path(os.path.realpath(path))  # symbolic links followed, even when path is missing


def _relation(out: Path, other: Path) -> str | None:
    if out == other:
        return "is"
    if out in other.parents:
        return "holds"
    if other in out.parents:
        return "lies inside"
    return None


def check_output(
    option: str,
    path: Path_,
    *,
    directory: bool = False,
    overwrite: bool = False,
    inputs: Inputs = (),
    runs: Sequence[Path_] = (),
) -> Path:
    """``path`` checked as an output of one command, before any work; returns it as a Path.

    ``directory``: a folder is written (its own rule for replacing lives in
    ``runs.run_directory``), else a file, which must not exist unless ``overwrite``.
    ``inputs``: what the command reads (a mapping names each one for the message); the output
    may not be, hold, or lie inside any of them. ``runs``: run directories the command did
    not create; the output may lie inside one (``transfer evaluate`` writes
    ``RUN/evaluations/``) but never be one or hold one.
    """
    path = Path(path)
    kind = "folder" if directory else "file"
    if not directory and path.is_dir():
        raise CnnlabError(f"{option} {path} is a directory; give the name of a file to write")
    if directory and path.exists() and not path.is_dir():
        raise CnnlabError(f"{option} {path} is a file; give a directory to write into")
    existing = _existing_parent(option, path)
    where = _real(path)
    pairs = (p if isinstance(p, tuple) else ("an input", p) for p in inputs)
    named = inputs.items() if isinstance(inputs, Mapping) else pairs
    for label, given in named:
        if given is not None and (how := _relation(where, _real(given))):
            raise CnnlabError(
                f"{option} {path} {how} {label} of this command ({given}); name a new {kind}"
            )
    for run in runs:
        if _relation(where, _real(run)) in ("is", "holds"):
            raise CnnlabError(
                f"{option} {path} resolves to the run directory {run} (or a folder holding "
                f"it), which this command did not create; name a new {kind}"
            )
    if not directory and os.path.lexists(path) and not overwrite:
        raise CnnlabError(f"{option} {path} exists; choose a new name or add --overwrite")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CnnlabError(f"{option} {path}: cannot write into {existing} (permission denied)")
    return path


def _existing_parent(option: str, path: Path) -> Path:
    """The nearest existing folder above ``path``; a file there instead is refused."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise CnnlabError(f"{option} {path}: {parent} is a file, not a directory")
            return parent
    return Path(path.anchor or "/")


# -- atomic files -------------------------------------------------------------------------------


def exclusive_file(directory: Path, prefix: str, suffix: str) -> tuple[Path, int]:
    """A new file with a random name, created like ``tempfile.mkstemp`` but with mode
    0666 & ~umask (mkstemp always uses 0600, so every output would ignore the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        path = directory / f"{prefix}{secrets.token_hex(4)}{suffix}"
        with contextlib.suppress(FileExistsError):
            return path, os.open(path, flags, 0o666)


def publish(tmp: Path, path: Path, overwrite: bool = True) -> None:
    """Move the finished ``tmp`` to ``path``; without ``overwrite`` a hard link, which fails
    rather than replace a file that appeared meanwhile (rename would replace it)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise CnnlabError(f"{path} appeared while cnnlab worked; it was left as it is") from None
    os.unlink(tmp)


def atomic_write_bytes(path: Path_, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync and an atomic rename."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = exclusive_file(path.parent, f".{path.name}.", ".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path, overwrite)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if error := write_error(e, path):
            raise error from None
        raise
    return path


def atomic_write_text(path: Path_, text: str, overwrite: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite)


@contextlib.contextmanager
def staged(out: Path_, overwrite: bool = True) -> Iterator[Callable[[Path_], Path]]:
    """Write several files all or none: ``stage(path)`` names a temporary sibling of ``path``
    for any writer; the siblings take their places only when the block completes.

    On any error the temporaries, and the directories made for them, are removed: a full
    disk halfway through leaves neither half of the files nor an empty output folder.
    """
    pending: list[tuple[Path, Path]] = []
    made: list[Path] = []

    def stage(path: Path_) -> Path:
        path = Path(path)
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        made.extend(missing)  # deepest first
        tmp, fd = exclusive_file(path.parent, f".{path.name}.", ".staged")
        os.close(fd)
        pending.append((tmp, path))
        return tmp

    try:
        with output_errors(out):
            yield stage
            for tmp, path in pending:
                publish(tmp, path, overwrite)
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if still empty
        raise


# -- JSON and CSV -------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths and dataclasses reach JSON without the caller converting them.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n"


def write_json(path: Path_, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def read_json(path: Path_, what: str = "file") -> Any:
    """Read a JSON file, turning a missing or corrupt file into one clear CnnlabError."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnnlabError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CnnlabError(f"{what} is corrupt (not valid JSON): {path}: {e}") from None


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """``value`` made safe to open in a spreadsheet: text that would start a formula (a class
    named ``=HYPERLINK(...)``, say) gets OWASP's leading single quote; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_csv(path: Path_, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV; the header is the union of keys in first-seen order. Text cells
    (header included) are escaped with :func:`csv_cell`."""
    rows = [{csv_cell(k): csv_cell(v) for k, v in row.items()} for row in rows]
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


# -- lock files ---------------------------------------------------------------------------------


def open_lock(path: Path) -> int:
    """A descriptor of lock file ``path``, created if missing (0666 & ~umask).

    An existing one is opened only if it is a plain file of one link: never through a symbolic
    link (``O_NOFOLLOW``), never a hard link to someone's file, so writing a pid into the
    lock can never reach a file the user owns."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    while True:
        with contextlib.suppress(FileExistsError):
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            continue  # its holder removed it meanwhile: create it again
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise CnnlabError(_not_a_lock(path, "a symbolic link")) from None
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return fd
        os.close(fd)
        raise CnnlabError(_not_a_lock(path, "not a plain file of its own"))


def _not_a_lock(path: Path, what: str) -> str:
    return f"the lock file {path} is {what}; cnnlab never writes through it: remove it and retry"


def try_lock(path: Path) -> int | None:
    """A descriptor holding an exclusive lock on ``path`` (:func:`open_lock`), or None when
    another process holds it. A holder unlinks the file before letting go, so a lock won on a
    file that is no longer at ``path`` is dropped and taken again on the current one."""
    while True:
        fd = open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as e:  # a file system without locks: claim it unlocked, as before
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return fd
            os.close(fd)
            raise
        with contextlib.suppress(FileNotFoundError):
            here, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
            if (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino):
                return fd
        os.close(fd)


def unlock(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def _try_lock_or_say(path: Path, what: str) -> int | None:
    with output_errors(path):  # a read-only folder: one line, as for any output
        return try_lock(path)


@contextlib.contextmanager
def held_lock(path: Path, timeout: float, what: str = "lock") -> Iterator[None]:
    """Hold the lock file ``path`` (kept on disk afterwards: others wait on it), waiting up to
    ``timeout`` seconds. A lock between processes has no event to wait on: poll, as filelock
    does."""
    deadline = time.monotonic() + timeout
    while (fd := _try_lock_or_say(path, what)) is None:
        if time.monotonic() > deadline:
            raise CnnlabError(f"timed out waiting for the {what} {path}")
        time.sleep(0.05)
    try:
        yield
    finally:
        os.close(fd)  # closing drops the lock; the file stays for the next waiter
