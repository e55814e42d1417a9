"""Run the ``cnnlab`` CLI on a disk that fills up (for test_faults.py).

usage: python full_disk.py N ARGS...: the first N fsyncs succeed, every later one fails with
ENOSPC. Every cnnlab file write (``files.atomic_write_bytes``) fsyncs before its rename, so
the disk fills after exactly N complete files, wherever the command is at that moment.
"""

import errno
import os
import sys

_fsync = os.fsync
_left = int(sys.argv[1])


def _full_disk_fsync(fd: int) -> None:
    global _left
    if _left <= 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    _left -= 1
    _fsync(fd)


os.fsync = _full_disk_fsync
sys.argv = ["cnnlab", *sys.argv[2:]]

from cnnlab.cli import main  # noqa: E402  (after the patch, like the real CLI start-up)

main()
