"""Run directories, shared by every pipeline.

A run is a directory holding its resolved config, history, metrics, model and plots. It is
built under a temporary sibling name (``.NAME.<hex>.partial``) and renamed into place only
when complete, so an interrupted or failed run never leaves a half-written directory behind.

Nothing a user owns is replaced or deleted:

- ``--out`` is checked by the rule every output follows (``files.check_output``: never an
  input of the command, never at or above a run directory it did not create), then claimed
  with an exclusive lock (``.NAME.cnnlab-lock`` beside it; ``files.open_lock`` never follows a
  link), so two runs to the same place cannot both succeed; the kernel drops the lock of a
  killed run.
- every run directory carries a marker file (:data:`RUN_MARKER`), and ``overwrite`` replaces
  only a directory that has one; the current directory and its parents are never a run.
- a partial directory records its owner (pid, process start time, host); one whose owner is
  gone (a run killed by SIGKILL or SIGTERM) and whose lock is free is removed by the next run
  into the same parent folder.
- a full disk is one :class:`DiskFull` line, and the unfinished run is removed.

Writing the files inside is :mod:`cnnlab.files`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.errors import CnnlabError, DiskFull
from cnnlab.files import Inputs, atomic_write_text, check_output, disk_full, try_lock, unlock

RUN_MARKER = ".cnnlab-run"  # in every run directory cnnlab writes: `overwrite` may replace it
OWNER = ".cnnlab-owner"  # in a partial directory: the process that is writing it
PARTIAL = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.partial")


def lock_path(out: Path) -> Path:
    """The lock file of run directory ``out`` (named for cnnlab, so no user file is taken)."""
    return out.parent / f".{out.name}.cnnlab-lock"


def owner_record(name: str) -> dict[str, Any]:
    """The owner record of a partial directory for run ``name`` written by this process."""
    pid = os.getpid()
    return {"name": name, "pid": pid, "start": process_start(pid), "host": socket.gethostname()}


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot, Linux), to tell a pid that a new
    process has reused from the one that wrote a partial directory."""
    stat = read_text(Path(f"/proc/{pid}/stat"))
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5)


def owner_alive(owner: Mapping[str, Any]) -> bool:
    """False only when the owner process is certainly gone; anything unclear counts as alive."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return True  # another machine's process (a shared disk), or a record we cannot read
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    start = process_start(pid)
    return start is None or start == owner.get("start")


def remove_stale_partials(parent: Path, held: str) -> None:
    """Remove partial run directories in ``parent`` that killed runs left behind: their owner
    process is gone and nobody holds the lock of their name (``held`` is the one this process
    holds). Partial directories without an owner record (older cnnlab) are left alone, and a
    folder that cannot be cleaned does not stop the run."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            match = PARTIAL.fullmatch(entry.name)
            if match and not entry.is_symlink() and entry.is_dir():
                _remove_if_stale(entry, match["name"], held)


def _remove_if_stale(partial: Path, name: str, held: str) -> None:
    try:
        owner = json.loads(read_text(partial / OWNER))
    except json.JSONDecodeError:
        return
    if not isinstance(owner, dict) or owner.get("name") != name or owner_alive(owner):
        return
    if name == held:
        shutil.rmtree(partial, ignore_errors=True)
        return
    lock = lock_path(partial.parent / name)
    with contextlib.suppress(OSError, CnnlabError):  # a lock that is not ours: leave it
        fd = try_lock(lock)
        if fd is not None:
            try:
                shutil.rmtree(partial, ignore_errors=True)
            finally:
                unlock(lock, fd)


# -- run directories --------------------------------------------------------------------------


def check_run_target(
    out: str | os.PathLike, overwrite: bool = False, *, inputs: Inputs = (), runs: Sequence = ()
) -> Path:
    """Every refusal :func:`run_directory` makes on entry, without claiming anything: for
    commands with costly work (an ONNX export, say) before the run directory is entered.
    ``inputs`` and ``runs`` as for ``files.check_output``."""
    target = Path(os.path.abspath(out))
    _refuse_cwd(target, str(out))
    _refuse(target, str(out), overwrite)
    check_output("--out", out, directory=True, inputs=inputs, runs=runs)
    return target


def log_folder(option: str, path: str | os.PathLike, out: str | os.PathLike | None) -> Path:
    """A folder a tool writes to while a run trains (``--tensorboard DIR``, an MLflow store):
    made (with its parents) and a file written in it now, so an unusable one fails in one line
    before training, not after. Never inside the run directory ``out``: a folder made there
    before the run would block every rerun."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise CnnlabError(f"{option} {path}: not a folder")
    inputs = {} if out is None else {"the run directory --out": out}
    check_output(option, path, directory=True, inputs=inputs)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise CnnlabError(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    return path


@contextlib.contextmanager
def run_directory(
    out: str | os.PathLike, overwrite: bool = False, *, inputs: Inputs = (), runs: Sequence = ()
) -> Iterator[Path]:
    """Claim ``out`` and yield a temporary directory that becomes ``out`` only if the block
    completes. Enter it before the work starts: the claim and every refusal happen on entry.

    ``out`` must not exist (or be an empty directory) unless ``overwrite`` is set; with
    ``overwrite`` an old cnnlab run (one holding :data:`RUN_MARKER`) is replaced only after the
    new one is complete, and any other folder is refused. A second run to the same ``out``
    while this one is in progress fails at once. ``inputs``: what the command reads, and
    ``runs``: run directories it did not create (``files.check_output``).
    """
    shown = str(out)
    target = check_run_target(out, overwrite, inputs=inputs, runs=runs)  # before anything
    created = [p for p in target.parents if not p.exists()]  # `runs/` on a first run
    partial, release = _claim(target, shown, overwrite)
    done = False
    try:
        yield partial
        _publish(partial, target, shown, overwrite)
        done = True
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        if full := disk_full(e):
            raise DiskFull(
                f"disk full while writing the run {shown} ({full.strerror}); the unfinished "
                "run was removed: free some space and run again"
            ) from None
        raise
    finally:
        release()  # the lock file lives beside the run: gone before its folder can go
        if not done:
            _remove_empty(created)  # a failed first run leaves no empty `runs/` behind


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where empty; one that gained files stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


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
        os.ftruncate(fd, 0)  # a killed run's pid may be longer
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
        if (run_dir / "best.pt").is_file() and "model.keras" in missing:
            raise CnnlabError(
                f"{run_dir} is a transfer-learning run (best.pt), not a Fashion-MNIST one: use "
                f"the transfer commands (cnnlab transfer predict|evaluate {run_dir} ...)"
            )
        if (run_dir / "model.keras").is_file() and "best.pt" in missing:
            raise CnnlabError(
                f"{run_dir} is a Fashion-MNIST run (model.keras), not a transfer-learning one: "
                f"use the Fashion-MNIST commands (cnnlab predict|evaluate {run_dir} ...)"
            )
        raise CnnlabError(f"{run_dir} is not a complete cnnlab run (missing {', '.join(missing)})")
    return run_dir
