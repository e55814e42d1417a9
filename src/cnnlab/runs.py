"""Run directories and safe file writing, shared by every pipeline.

A run is a directory holding its resolved config, history, metrics, model and plots. It is
built under a temporary sibling name (``.NAME.<hex>.partial``) and renamed into place only
when complete, so an interrupted or failed run never leaves a half-written directory behind.

Nothing a user owns is replaced or deleted:

- ``--out`` is claimed at the start with an exclusive lock (``.NAME.cnnlab-lock`` beside it),
  so two runs to the same place cannot both succeed; the kernel drops the lock of a killed run.
- every run directory carries a marker file (:data:`RUN_MARKER`), and ``overwrite`` replaces
  only a directory that has one; the current directory and its parents are never a run.
- a partial directory records its owner process; one whose owner is gone (a run killed by
  SIGKILL or SIGTERM) is removed by the next run into the same parent folder.
- files are created with the permissions the umask allows (``tempfile``'s 0600/0700 do not).
- a full disk is one :class:`DiskFull` line, and the unfinished run is removed.
- an ``--out`` is checked before any work (``require_file_target``, ``require_dir_target``):
  not a directory where a file goes, not a file where a directory goes, nor under a file.

Locks and owner records live in :mod:`cnnlab.run_claim`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import platform
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.errors import CnnlabError, DiskFull
from cnnlab.run_claim import (
    OWNER,
    lock_path,
    owner_record,
    read_text,
    remove_stale_partials,
    try_lock,
    unlock,
)

RUN_MARKER = ".cnnlab-run"  # in every run directory cnnlab writes: `overwrite` may replace it
# the disk, not the input, is at fault: no space, no quota, a file too large for it
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def exclusive_file(directory: Path, prefix: str, suffix: str) -> tuple[Path, int]:
    """A new file with a random name, created like ``tempfile.mkstemp`` but with mode
    0666 & ~umask (mkstemp always uses 0600, so every run file ignored the umask)."""
    while True:
        path = directory / f"{prefix}{secrets.token_hex(4)}{suffix}"
        with contextlib.suppress(FileExistsError):
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


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


def require_file_target(option: str, path: str | os.PathLike) -> Path:
    """``path`` can become a file: it is not a directory, and no parent of it is a file."""
    path = Path(path)
    if path.is_dir():
        raise CnnlabError(f"{option} {path} is a directory; give the name of a file to write")
    _require_directory_parents(option, path)
    return path


def require_dir_target(option: str, path: str | os.PathLike) -> Path:
    """``path`` is a directory or can become one: it is not a file, nor under one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CnnlabError(f"{option} {path} is a file; give a directory to write into")
    _require_directory_parents(option, path)
    return path


def _require_directory_parents(option: str, path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CnnlabError(f"{option} {path}: {parent} is a file, not a directory")
            return


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = exclusive_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full := disk_full(e):
            raise DiskFull(
                f"disk full while writing {path} ({full.strerror}); free some space and retry"
            ) from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


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


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
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


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
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


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise CnnlabError(f"file not found: {path}") from None


# -- run directories --------------------------------------------------------------------------


@contextlib.contextmanager
def run_directory(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Claim ``out`` and yield a temporary directory that becomes ``out`` only if the block
    completes. Enter it before the work starts: the claim and every refusal happen on entry.

    ``out`` must not exist (or be an empty directory) unless ``overwrite`` is set; with
    ``overwrite`` an old cnnlab run (one holding :data:`RUN_MARKER`) is replaced only after the
    new one is complete, and any other folder is refused. A second run to the same ``out``
    while this one is in progress fails at once.
    """
    shown = str(out)
    target = Path(os.path.abspath(out))
    _refuse_cwd(target, shown)
    _refuse(target, shown, overwrite)  # before anything is created
    partial, release = _claim(target, shown, overwrite)
    try:
        yield partial
        _publish(partial, target, shown, overwrite)
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        if full := disk_full(e):
            raise DiskFull(
                f"disk full while writing the run {shown} ({full.strerror}); the unfinished "
                "run was removed: free some space and run again"
            ) from None
        raise
    finally:
        release()


def _refuse_cwd(out: Path, shown: str) -> None:
    with contextlib.suppress(OSError):  # no current directory (deleted): nothing to protect
        here = Path.cwd().resolve()
        if out.resolve() in (here, *here.parents):
            raise CnnlabError(
                f"--out {shown} is the current directory or contains it; name a new folder"
            )


def _holds_files(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _refuse(out: Path, shown: str, overwrite: bool) -> None:
    if out.is_symlink():
        raise CnnlabError(f"--out {shown} is a symbolic link; name the directory itself")
    if out.exists() and not out.is_dir():
        raise CnnlabError(f"--out {shown} exists and is not a directory")
    try:
        if not _holds_files(out):
            return
    except OSError as e:
        raise CnnlabError(f"--out {shown} cannot be read ({e.strerror})") from None
    if not overwrite:
        raise CnnlabError(
            f"--out {shown} already holds files; choose another directory or --overwrite"
        )
    if not (out / RUN_MARKER).is_file():
        raise CnnlabError(
            f"--out {shown} holds files but no {RUN_MARKER} marker, so it is not a cnnlab run "
            "that --overwrite may replace; choose another directory (or empty it yourself)"
        )


def _claim(out: Path, shown: str, overwrite: bool) -> tuple[Path, Callable[[], None]]:
    """Lock ``out``, clear stale partials beside it and create this run's partial directory;
    returns it and the function that releases the lock."""
    parent, lock = out.parent, lock_path(out)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd = try_lock(lock)
    except OSError as e:
        raise _cannot_write(e, shown) from None
    if fd is None:
        holder = read_text(lock).strip()
        raise CnnlabError(
            f"--out {shown} is being written by another cnnlab run"
            + (f" (pid {holder})" if holder.isdigit() else "")
            + "; wait for it to finish or choose another directory"
        )
    try:
        os.write(fd, str(os.getpid()).encode())
        _refuse(out, shown, overwrite)  # again: the folder may have changed before the lock
        remove_stale_partials(parent, out.name)
        partial = _make_partial(parent, out.name)
    except (OSError, DiskFull) as e:
        unlock(lock, fd)
        raise _cannot_write(e, shown) from None
    except BaseException:
        unlock(lock, fd)
        raise
    return partial, lambda: unlock(lock, fd)


def _cannot_write(e: OSError | DiskFull, shown: str) -> CnnlabError:
    if full := disk_full(e):
        return DiskFull(f"disk full while creating the run {shown} ({full.strerror})")
    reason = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) else str(e)
    return CnnlabError(f"cannot create the run directory {shown} ({reason})")


def _make_partial(parent: Path, name: str) -> Path:
    while True:
        partial = parent / f".{name}.{secrets.token_hex(4)}.partial"
        with contextlib.suppress(FileExistsError):
            partial.mkdir()  # 0777 & ~umask
            break
    try:
        atomic_write_text(partial / OWNER, json.dumps(owner_record(name)) + "\n")
        atomic_write_text(
            partial / RUN_MARKER,
            f"Written by cnnlab {__version__}: `--overwrite` may replace this directory.\n",
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return partial


def _publish(partial: Path, out: Path, shown: str, overwrite: bool) -> None:
    """Move the finished ``partial`` to ``out`` (replacing an old cnnlab run there)."""
    (partial / OWNER).unlink()
    _refuse(out, shown, overwrite)  # the folder may have been filled during the run
    try:
        if not _holds_files(out):
            os.replace(partial, out)  # replaces an empty directory too
            return
        old = out.with_name(f".{out.name}.{secrets.token_hex(4)}.old")
        os.replace(out, old)
        try:
            os.replace(partial, out)
        except OSError:
            os.replace(old, out)  # put the old run back
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        if disk_full(e):
            raise
        raise CnnlabError(f"cannot move the finished run into {shown} ({e.strerror})") from None


def require_run_dir(run_dir: str | os.PathLike, *required: str) -> Path:
    """Check that ``run_dir`` is a finished run holding ``required`` files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CnnlabError(f"run directory not found: {run_dir}")
    missing = [name for name in required if not (run_dir / name).is_file()]
    if missing:
        raise CnnlabError(f"{run_dir} is not a complete cnnlab run (missing {', '.join(missing)})")
    return run_dir


_PACKAGES = ("numpy", "keras", "tensorflow-cpu", "tensorflow", "torch", "torchvision", "optuna")


def environment_info() -> dict[str, Any]:
    """Machine and library versions, saved with every run so results can be reproduced."""
    versions = {}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu_description(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU's model name, with its family, model and vector instructions where
    ``/proc/cpuinfo`` has them: a VM's "AMD EPYC" names neither its generation nor its speed
    (Zen 4 is family 25 model 17; Zen 5 family 26)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block describes them all
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown"
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']} model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    details += [label for flag, label in _ISA if flag in flags][:1]
    details += [label for flag, label in _ISA_EXTRAS if flag in flags]
    return f"{name} ({', '.join(details)})" if details else name


_ISA = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))  # the widest one is named
_ISA_EXTRAS = (("avx512_bf16", "BF16"), ("amx_tile", "AMX"))
