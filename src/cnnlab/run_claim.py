"""Who holds a run directory: the lock on ``--out`` and the owner record of a partial directory.

A run locks ``.NAME.cnnlab-lock`` beside its ``--out`` with ``fcntl.flock`` for as long as it works
(POSIX): the kernel drops the lock when the process dies, however it dies, so a killed run never
blocks the next one. Its partial directory ``.NAME.<hex>.partial`` holds an owner record (pid,
process start time, host); a partial whose owner is gone and whose lock is free was left by a
killed run, and the next run into the same folder removes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

OWNER = ".cnnlab-owner"  # in a partial directory: the process that is writing it
PARTIAL = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.partial")


def lock_path(out: Path) -> Path:
    """The lock file of run directory ``out`` (named for cnnlab, so no user file is taken)."""
    return out.parent / f".{out.name}.cnnlab-lock"


def owner_record(name: str) -> dict[str, Any]:
    """The owner record of a partial directory for run ``name`` written by this process."""
    pid = os.getpid()
    return {"name": name, "pid": pid, "start": process_start(pid), "host": socket.gethostname()}


def try_lock(path: Path) -> int | None:
    """A descriptor holding an exclusive lock on ``path`` (created if missing), or None when
    another process holds it. A holder unlinks the file before letting go, so a lock won on a
    file that is no longer at ``path`` is dropped and taken again on the current one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
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
            here, held = os.stat(path), os.fstat(fd)
            if (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino):
                return fd
        os.close(fd)


def unlock(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


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
    with contextlib.suppress(OSError):
        fd = try_lock(lock)
        if fd is not None:
            try:
                shutil.rmtree(partial, ignore_errors=True)
            finally:
                unlock(lock, fd)
