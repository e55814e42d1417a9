"""Imported first by the modules the CLI starts from (``train``, ``evaluate``), before Keras.

Two things must happen before Keras is imported, and both are start-up only:

- The backend is checked: Keras fails on an unknown or missing one with a traceback at its own
  import (``ValueError: Unable to import backend : bogus``, ``No module named 'jax'``); here it
  is one :class:`~cnnlab.errors.CnnlabError` line naming the supported backends.
- TensorFlow is imported with the C++ log lines it prints while loading kept off the terminal,
  when ``TF_CPP_MIN_LOG_LEVEL`` asks for quiet (the CLI sets 3 unless ``--verbose``: see
  :func:`cnnlab.fmnist.backend.quiet_framework_logs`). TensorFlow 2.21 writes them before its
  logging reads that variable (an absl bug, tensorflow/tensorflow#102212), so every error would
  otherwise reach the user as four lines of noise and then the one cnnlab line. At level 3 its
  Python logger is also limited to errors (no retracing notices). Python-level errors and
  warnings still show.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from cnnlab.fmnist.backend import require_supported_backend


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block (C++ writes bypass sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _log_level() -> int:
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    return int(level) if level.isdigit() else 0  # 1 hides TensorFlow's INFO lines, 3 all but FATAL


if require_supported_backend() == "tensorflow" and "tensorflow" not in sys.modules:
    if _log_level() >= 1:
        with native_stderr_silenced():
            import tensorflow
    else:
        import tensorflow
    if _log_level() >= 3:
        tensorflow.get_logger().setLevel("ERROR")
